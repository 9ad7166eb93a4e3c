"""Updating many rows, each with values of its own, in one statement.

Django's `bulk_update` builds a CASE expression per field with a branch per row: quadratic in
the batch, and most of the time of applying a batch of webhook events. On PostgreSQL this is
`UPDATE … FROM (VALUES …)`, one row of values per object; elsewhere (SQLite in development and
tests) Django's own `bulk_update`.
"""

from django.db import connections, router


def bulk_update(objs, fields):
    """Save `fields` of every object in `objs` (all of one model) in one statement."""
    objs = list(objs)
    if not objs:
        return 0
    model = type(objs[0])
    using = router.db_for_write(model)
    connection = connections[using]
    if connection.vendor != "postgresql":
        return model._default_manager.bulk_update(objs, fields)
    meta = model._meta
    pk = meta.pk
    columns = [meta.get_field(name) for name in fields]
    for field in columns:  # auto_now fields take the time of this save, as in save()
        if getattr(field, "auto_now", False):
            for obj in objs:
                field.pre_save(obj, add=False)
    auto_now = [f for f in meta.concrete_fields if getattr(f, "auto_now", False)]
    for field in auto_now:
        if field not in columns:
            columns.append(field)
            for obj in objs:
                field.pre_save(obj, add=False)
    every = [pk, *columns]
    types = [field.db_type(connection) for field in every]
    row = "(" + ", ".join(f"%s::{db_type}" for db_type in types) + ")"
    params = []
    for obj in objs:
        for field in every:
            params.append(field.get_db_prep_save(getattr(obj, field.attname), connection))
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(f.column)} = v.{quote(f.column)}" for f in columns)
    names = ", ".join(quote(f.column) for f in every)
    sql = (
        f"UPDATE {quote(meta.db_table)} AS t SET {assignments} "
        f"FROM (VALUES {', '.join([row] * len(objs))}) AS v({names}) "
        f"WHERE t.{quote(pk.column)} = v.{quote(pk.column)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount
