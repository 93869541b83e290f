"""Row access for the engine's hot path, without the query compiler.

The ORM spends more time building a query than PostgreSQL spends running it (about 1 to 2
ms against 0.2 ms per statement, measured in bench/engine.py's workers). The engine runs the
same handful of statements for every step, so these helpers cache the SQL per model and
field list and convert values with the fields' own methods (`get_db_prep_save`, the
backend's and the field's converters), exactly as the ORM would. Models come back as
ordinary instances (`Model.from_db`), unsaved changes go out with `row_update`.

Only for simple single-table statements; everything else stays on the ORM.
"""

from functools import cache

from django.db import connection


def quote(name: str) -> str:
    return connection.ops.quote_name(name)


@cache
def _columns(model) -> tuple:
    return tuple(model._meta.concrete_fields)


@cache
def _converters(model, vendor: str) -> tuple:
    table = model._meta.db_table
    out = []
    for field in _columns(model):
        col = field.get_col(table)
        funcs = connection.ops.get_db_converters(col) + field.get_db_converters(connection)
        out.append((field, tuple(funcs), col))
    return tuple(out)


@cache
def _select_sql(model, vendor: str) -> str:
    cols = ", ".join(f"{quote(model._meta.db_table)}.{quote(f.column)}"
                     for f in _columns(model))
    return f"SELECT {cols} FROM {quote(model._meta.db_table)}"


def db_value(model, name: str, value):
    """`value` as the database stores field `name` of `model` (e.g. a UUID on SQLite)."""
    return model._meta.get_field(name).get_db_prep_value(value, connection)


def rows_fetch(model, where: str, params, *, order_by: str = "", for_update: bool = False
               ) -> list:
    """Instances of `model` for `SELECT … FROM table WHERE {where} ORDER BY {order_by}`,
    locked `FOR UPDATE` where the database has it; columns are named as in the table."""
    sql = f"{_select_sql(model, connection.vendor)} WHERE {where}"
    if order_by:
        sql += f" ORDER BY {order_by}"
    if for_update and connection.features.has_select_for_update:
        sql += " FOR UPDATE"
    converters = _converters(model, connection.vendor)
    names = [f.attname for f in _columns(model)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    out = []
    for row in rows:
        values = []
        for value, (_field, funcs, col) in zip(row, converters, strict=True):
            for func in funcs:
                value = func(value, col, connection)
            values.append(value)
        out.append(model.from_db(connection.alias, names, values))
    return out


@cache
def _update_sql(model, fields: tuple, vendor: str) -> tuple:
    meta = model._meta
    targets = tuple(meta.get_field(name) for name in fields)
    sets = ", ".join(f"{quote(f.column)} = %s" for f in targets)
    return f"UPDATE {quote(meta.db_table)} SET {sets} WHERE {quote(meta.pk.column)} = %s", targets


def row_update(obj, fields: tuple) -> None:
    """Save `fields` of `obj` (an `auto_now` field among them is set to now)."""
    sql, targets = _update_sql(type(obj), tuple(fields), connection.vendor)
    values = [f.get_db_prep_save(f.pre_save(obj, add=False), connection) for f in targets]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*values, obj._meta.pk.get_db_prep_value(obj.pk, connection)])


@cache
def _insert_sql(model, vendor: str) -> tuple:
    meta = model._meta
    fields = tuple(f for f in _columns(model) if not (f.primary_key and f.auto_created)
                   and not getattr(f, "db_returning", False))
    cols = ", ".join(quote(f.column) for f in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    return f"INSERT INTO {quote(meta.db_table)} ({cols}) VALUES ", row, fields


def rows_insert(model, objs: list) -> None:
    """Insert `objs` in one statement; their auto-increment ids are not read back."""
    if not objs:
        return
    head, row, fields = _insert_sql(model, connection.vendor)
    values = []
    for obj in objs:
        values.extend(f.get_db_prep_save(f.pre_save(obj, add=True), connection) for f in fields)
    with connection.cursor() as cursor:
        cursor.execute(head + ", ".join([row] * len(objs)), values)
