"""The SQLite test database from a migrated copy: migrating from scratch costs every test worker
seconds a run, loading the copy milliseconds.

The copy is made by the first run after any migration changes (it is keyed by every migration
file, the installed apps and their versions) and kept under .pytest_cache. It holds what
`migrate` leaves behind, the django_migrations table included, so tests that migrate backwards
and forwards work as on a freshly migrated database. PostgreSQL test databases are migrated as
before.

Migration tests go back to an earlier state with `back_to`, run the migration under test with
`migrate`, and return with `migrate_to_latest`.
On SQLite, the earlier state is a copy too (made by really migrating back, on a miss): a trip
back through many migrations costs SQLite seconds, as every schema change rebuilds its table.
The migration under test always runs for real.
"""

import hashlib
import os
import sqlite3
import tempfile
from importlib import metadata
from pathlib import Path

from django.apps import apps
from django.conf import settings
from django.db import connection
from django.db.backends.sqlite3.creation import DatabaseCreation
from django.db.migrations.executor import MigrationExecutor

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".pytest_cache" / "test-db"


def _digest():
    digest = hashlib.sha256()
    for app in apps.get_app_configs():
        digest.update(app.name.encode())
        folder = Path(app.path) / "migrations"
        for path in sorted(folder.glob("*.py")) if folder.is_dir() else ():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    for name in ("django", "django-axes"):
        digest.update(f"{name}={metadata.version(name)}".encode())
    return digest.hexdigest()[:16]


def _template(targets=None):
    if not targets:
        return CACHE / f"{_digest()}.sqlite3"
    state = hashlib.sha256(repr(sorted(targets)).encode()).hexdigest()[:12]
    return CACHE / f"{_digest()}-{state}.sqlite3"


def _copies_apply():
    return connection.vendor == "sqlite" and connection.creation.is_in_memory_db(
        connection.settings_dict["NAME"]
    )


def _load(template):
    connection.ensure_connection()
    source = sqlite3.connect(template)
    try:
        source.backup(connection.connection)
    finally:
        source.close()


def migrate(targets):
    """Migrate the test database to `targets` (a list of (app, migration)) and return the
    models of that state. For transactional tests."""
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def back_to(targets):
    """Take the test database back to the state `targets`, as `migrate` would from the latest
    state, and return the models of that state. Whatever the database held is replaced."""
    copy = _template(targets)
    if not (_copies_apply() and copy.exists()):
        apps = migrate(targets)
        if _copies_apply():
            _save(connection.connection, copy)
        return apps
    _load(copy)
    return MigrationExecutor(connection).loader.project_state(targets).apps


def migrate_to_latest():
    """Back to the latest state of every app, for the tests that come after."""
    if _copies_apply() and _template().exists():
        _load(_template())
        return
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def install():
    """Make SQLite in-memory test databases from the migrated copy (made on a miss)."""
    migrate_from_scratch = DatabaseCreation.create_test_db

    def create_test_db(self, verbosity=1, autoclobber=False, serialize=True, keepdb=False):
        if not self.is_in_memory_db(self._get_test_db_name()) or keepdb:
            return migrate_from_scratch(self, verbosity, autoclobber, serialize, keepdb)
        template = _template()
        if not template.exists():
            name = migrate_from_scratch(self, verbosity, autoclobber, serialize, keepdb)
            _save(self.connection.connection, template)
            return name
        name = self._get_test_db_name()
        self._create_test_db(verbosity, autoclobber, keepdb)
        self.connection.close()
        settings.DATABASES[self.connection.alias]["NAME"] = name
        self.connection.settings_dict["NAME"] = name
        self.connection.ensure_connection()
        source = sqlite3.connect(template)
        try:
            source.backup(self.connection.connection)
        finally:
            source.close()
        if serialize:
            self.connection._test_serialized_contents = self.serialize_db_to_string()
        return name

    DatabaseCreation.create_test_db = create_test_db


def _save(connection, template):
    """Write the migrated database to `template` whole or not at all (workers race for it)."""
    template.parent.mkdir(parents=True, exist_ok=True)
    handle, path = tempfile.mkstemp(dir=template.parent, suffix=".tmp")
    os.close(handle)
    try:
        target = sqlite3.connect(path)
        try:
            connection.backup(target)
        finally:
            target.close()
        os.replace(path, template)
    finally:
        if os.path.exists(path):
            os.unlink(path)
