"""Values read from a URL, which anyone can edit in the address bar: never a 500.

`?page=` is read in one way on every list: absent is the first page; something that is not a
page number at all (abc, 0, -1) is a 404; a page past the end (a bookmark to page 3 of a list
that has since shrunk, or 99999999999999999999) is the last page. An id is a whole number that
fits the database's bigint, or no id at all. A search is text PostgreSQL can hold.
"""

import inspect

from django.core.paginator import EmptyPage, Paginator
from django.http import Http404
from django.utils.inspect import method_has_no_args
from django_tables2 import LazyPaginator

MAX_ID = 2**63 - 1  # PostgreSQL's bigint; SQLite's INTEGER

# No list here comes near a billion rows, so a page that starts further down is past the end;
# its OFFSET would not even fit the database's integer.
MAX_OFFSET = 10**9


def page_number(request, name="page"):
    """The page asked for: 1 when none is; a 404 when the value is not a page number."""
    value = request.GET.get(name, "")
    if value == "":
        return 1
    if not (value.isascii() and value.isdigit()) or int(value) < 1:
        raise Http404("No such page.")
    return int(value)


def search_param(request, name="q"):
    """The search typed in a list's box: at most 100 characters, without NUL (which
    PostgreSQL refuses in a query parameter, failing the page)."""
    return request.GET.get(name, "").replace("\x00", "").strip()[:100]


def id_param(value):
    """The id in `value`, or None when it cannot be one (empty, not a whole number, too big
    for the database, which would fail the query rather than find nothing)."""
    value = (value or "").strip()
    if value.isascii() and value.isdigit() and 0 < int(value) <= MAX_ID:
        return int(value)
    return None


class LastPageLazyPaginator(LazyPaginator):
    """django-tables2's LazyPaginator (no COUNT for an ordinary page), with the last page for
    a page past the end: only then does it count the rows."""

    def page(self, number):
        number = self.validate_number(number or 1)
        if (number - 1) * self.per_page < MAX_OFFSET:
            try:
                return super().page(number)
            except EmptyPage:
                pass
        return super().page(self._last_page())

    def _last_page(self):
        count = getattr(self.object_list, "count", None)
        if callable(count) and not inspect.isbuiltin(count) and method_has_no_args(count):
            total = count()
        else:
            total = len(self.object_list)
        return max(1, -(-total // self.per_page))


def page_of(request, object_list, per_page, *, lazy=False):
    """The requested page of `object_list`; `lazy` pages without counting (big lists)."""
    number = page_number(request)
    if lazy:
        return LastPageLazyPaginator(object_list, per_page).page(number)
    paginator = Paginator(object_list, per_page)
    return paginator.page(min(number, paginator.num_pages))
