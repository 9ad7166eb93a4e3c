// Reachable's own script. Loaded as a file: the Content-Security-Policy allows no inline script.
(function () {
  "use strict";

  var TOAST_SECONDS = 5;

  // Toasts: views send {"toast": {"message": "...", "level": "success"}} in HX-Trigger.
  function showToast(message, level) {
    var container = document.getElementById("toasts");
    if (!container) return;
    var toast = document.createElement("div");
    toast.className = "toast show align-items-center border-0 text-bg-" + (level || "success");
    toast.setAttribute("role", "status");
    var row = document.createElement("div");
    row.className = "d-flex";
    var body = document.createElement("div");
    body.className = "toast-body";
    body.textContent = message;
    var close = document.createElement("button");
    close.type = "button";
    close.className = "btn-close btn-close-white me-2 m-auto";
    close.setAttribute("aria-label", "Close");
    close.addEventListener("click", function () { toast.remove(); });
    row.appendChild(body);
    row.appendChild(close);
    toast.appendChild(row);
    container.appendChild(toast);
    setTimeout(function () { toast.remove(); }, TOAST_SECONDS * 1000);
  }

  document.addEventListener("toast", function (event) {
    var detail = event.detail || {};
    showToast(detail.message || detail.value || "Success", detail.level);
  });

  document.addEventListener("DOMContentLoaded", function () {
    // Server-rendered toasts (Django messages) fade after a while too.
    document.querySelectorAll("#toasts .toast").forEach(function (toast) {
      setTimeout(function () { toast.remove(); }, TOAST_SECONDS * 1000);
    });
  });

  // A form marked data-reset-on-success empties itself once its htmx request succeeded.
  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail.elt;
    if (form && form.matches && form.matches("form[data-reset-on-success]") && event.detail.successful) {
      form.reset();
      // What described the old text (the counter, the warnings) goes with it.
      form.querySelectorAll("[data-clear-on-reset]").forEach(function (el) { el.textContent = ""; });
    }
  });

  // Keep a message thread scrolled to its newest message.
  function scrollThread() {
    var thread = document.getElementById("thread");
    if (thread) thread.scrollTop = thread.scrollHeight;
  }
  document.addEventListener("DOMContentLoaded", scrollThread);
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "thread") scrollThread();
  });
  // New messages arrive by an out-of-band swap into the thread.
  document.addEventListener("htmx:oobAfterSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "thread-messages") scrollThread();
  });

  // On a phone the list comes first: opening a conversation brings its contact and thread
  // into view.
  document.addEventListener("DOMContentLoaded", function () {
    var pane = document.getElementById("conversation-pane");
    if (pane && pane.dataset.open && window.matchMedia("(max-width: 991.98px)").matches) {
      pane.scrollIntoView();
    }
  });

  // "Select all" checkboxes for bulk actions.
  document.addEventListener("change", function (event) {
    var box = event.target;
    if (!box.matches || !box.matches("input[data-select-all]")) return;
    document.querySelectorAll("input[name='" + box.dataset.selectAll + "']").forEach(function (item) {
      item.checked = box.checked;
    });
  });

  window.Reachable = { showToast: showToast };
})();
