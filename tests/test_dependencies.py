"""Models and rules depend one way: conversations → deliverability → contacts (ARCHITECTURE.md).

Pages (views and the admin) may read from any app; every other module of an app imports only
its own app and the apps below it, but for the few exceptions ARCHITECTURE.md names.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["contacts", "deliverability", "conversations"]  # each may import those before it

# (module, app it reaches up to): on purpose, and written down in ARCHITECTURE.md.
EXCEPTIONS = {
    ("contacts/importer.py", "deliverability"),  # the audit rows of the numbers it changes
    ("contacts/management/commands/demo.py", "deliverability"),  # seeds every app
    ("contacts/management/commands/demo.py", "conversations"),
    ("deliverability/reports.py", "conversations"),  # the reports count messages
}


def _is_page(path):
    """Views and the admin: pages that may show any app's rows."""
    return path.name in ("views.py", "admin.py") or path.name.endswith("_views.py")


def _imported_apps(path):
    """The project apps a module imports, at the top or inside a function."""
    apps = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        apps.update(name.split(".")[0] for name in names if name.split(".")[0] in LAYERS)
    return apps


def upward_imports():
    found = set()
    for level, app in enumerate(LAYERS):
        above = set(LAYERS[level + 1 :])
        for path in sorted((ROOT / app).rglob("*.py")):
            if _is_page(path) or "migrations" in path.parts:
                continue
            module = path.relative_to(ROOT).as_posix()
            found.update((module, other) for other in _imported_apps(path) & above)
    return found


def test_no_module_imports_an_app_above_its_own():
    assert upward_imports() - EXCEPTIONS == set()


def test_every_exception_is_still_needed():
    # An exception nobody uses any more would let the next one in unnoticed.
    assert EXCEPTIONS - upward_imports() == set()


def test_the_walk_sees_imports_inside_functions_and_plain_imports(tmp_path):
    module = tmp_path / "rules.py"
    module.write_text(
        "import conversations.tasks\n"
        "from . import models\n"
        "def f():\n"
        "    from deliverability.models import NumberState\n"
    )
    assert _imported_apps(module) == {"conversations", "deliverability"}
