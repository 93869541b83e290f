"""Row access for the engine's hot path, without the query compiler.

The ORM spends more time building a query than PostgreSQL spends running it (about 1 to 2
ms against 0.2 ms per statement, measured in bench/engine.py's workers). The engine runs the
same handful of statements for every step, so these helpers cache the SQL per model and
field list and convert values with the fields' own methods (`get_db_prep_save`, the
backend's and the field's converters), exactly as the ORM would. Models come back as
ordinary instances (built as `Model.from_db` would, see `_built`), unsaved changes go out
with `row_update`.

On PostgreSQL the statements go through a server-side-binding cursor, so psycopg prepares
each one after five uses (`prepare_threshold`, set in settings: Django leaves it off) and
the server stops parsing and planning them: measured here, a third less PostgreSQL CPU per
step. Reads of one moment and the writes of a transaction travel in psycopg pipelines
(`rows_fetch_together`, `writes_batched`); writes held together whose order cannot matter
go as one statement (`_groups`). A pooler in transaction mode that does not keep
prepared statements, such as older PgBouncer, needs them off:
`FCORE_DB_PREPARED_STATEMENTS=0` (docs/operations.md).

Only for simple single-table statements; everything else stays on the ORM.
"""

import itertools
import re
import threading
from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime
from functools import cache, lru_cache, partial
from typing import NamedTuple

from django.db import DEFAULT_DB_ALIAS, connection, connections, models, transaction
from django.db.models.base import ModelState
from django.db.models.signals import post_init, pre_init


def _db():
    """This thread's connection itself: `connection` is a proxy that looks it up again at
    every attribute, a cost the hot path pays hundreds of times per step."""
    return connections[DEFAULT_DB_ALIAS]


def _cursor(db):
    """A Django cursor (wrappers, error translation and query logging included); on
    PostgreSQL over a server-side-binding psycopg cursor that takes PostgreSQL's own `$1`
    placeholders, so psycopg never parses the statement for them: statements go through
    `_execute`, which numbers them."""
    if db.vendor != "postgresql":
        return db.cursor()
    import psycopg

    db.close_if_health_check_failed()
    db.ensure_connection()
    with db.wrap_database_errors:
        return db._prepare_cursor(psycopg.RawCursor(db.connection))


_PLACEHOLDER = re.compile(r"%[s%]")


@lru_cache(maxsize=4096)
def _numbered(sql: str) -> str:
    """`sql` with its `%s` placeholders numbered `$1`, `$2` … (and `%%` as `%`)."""
    numbers = itertools.count(1)
    return _PLACEHOLDER.sub(
        lambda match: "%" if match.group() == "%%" else f"${next(numbers)}", sql)


def _execute(cursor, db, sql: str, params) -> None:
    cursor.execute(_numbered(sql) if db.vendor == "postgresql" else sql, params)


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
        out.append((tuple(funcs), col))
    return tuple(out)


def _plain_type(field, vendor: str):
    """The Python type a field's value goes to the database as, unchanged; else None. On
    PostgreSQL an aware datetime goes as it is (`adapt_datetimefield_value` returns it;
    a naive one still goes through the field, which makes it aware)."""
    if isinstance(field, models.ForeignKey):
        field = field.target_field
    if isinstance(field, models.CharField | models.TextField):
        return str
    if isinstance(field, models.BooleanField):
        return bool
    if isinstance(field, models.IntegerField):
        return int
    if isinstance(field, models.DateTimeField) and vendor == "postgresql":
        return datetime
    return None


@cache
def _preparers(fields: tuple, vendor: str) -> tuple:
    """Per field: (the type passed through as it is, the field) — the field's own
    `get_db_prep_save` for every other value, exactly as the ORM would. None goes as it
    is: every field prepares it as NULL."""
    return tuple((_plain_type(f, vendor), f) for f in fields)


def _prepared(preparers: tuple, values, db) -> list:
    return [value if value is None or type(value) is plain and (
                plain is not datetime or value.tzinfo is not None)
            else field.get_db_prep_save(value, db)
            for (plain, field), value in zip(preparers, values, strict=True)]


@cache
def columns_sql(model, vendor: str) -> str:
    """Every concrete column of `model`, table-qualified, in the order instances are built
    from (`_instances`, `Joined`)."""
    return ", ".join(f"{quote(model._meta.db_table)}.{quote(f.column)}"
                     for f in _columns(model))


@cache
def _select_sql(model, vendor: str) -> str:
    return f"SELECT {columns_sql(model, vendor)} FROM {quote(model._meta.db_table)}"


def db_value(model, name: str, value):
    """`value` as the database stores field `name` of `model` (e.g. a UUID on SQLite)."""
    return model._meta.get_field(name).get_db_prep_value(value, _db())


@cache
def _fetch_sql(model, where: str, order_by: str, for_update: bool, limit: int,
               vendor: str) -> str:
    sql = f"{_select_sql(model, vendor)} WHERE {where}"
    if order_by:
        sql += f" ORDER BY {order_by}"
    if limit:
        sql += f" LIMIT {int(limit)}"
    if for_update and connection.features.has_select_for_update:
        sql += " FOR UPDATE"
    return sql


@cache
def _attnames(model) -> list:
    return [f.attname for f in _columns(model)]


def _built(model, names: list, values, alias: str | None):
    """An instance holding `values` (attnames `names`, every concrete field), as
    `Model.from_db` (alias given) or `Model(**values)` (None) would build it, in a third of
    the time (a StepRun: 5 µs instead of 14 here): the values go straight into the
    instance's `__dict__` where `__init__` would pass each through `setattr`, whose field
    descriptors (ForeignKey, FileField, django-fsm's FSMField without state proxies) store
    it there too on a new instance. A model with `pre_init`/`post_init` receivers is built
    the ordinary way."""
    if (pre_init.receivers or post_init.receivers) and (
            pre_init.has_listeners(model) or post_init.has_listeners(model)):
        if alias is None:
            return model(**dict(zip(names, values, strict=True)))
        return model.from_db(alias, names, values)
    obj = model.__new__(model)
    obj.__dict__.update(zip(names, values, strict=True))
    state = obj._state = ModelState()
    state.adding, state.db = alias is None, alias
    return obj


def row_new(model, **values):
    """A new, unsaved instance from a value for every concrete field (attnames; an
    auto-created primary key may be left out), built as `_built` does."""
    names = _attnames(model)
    pk = model._meta.pk
    if isinstance(pk, models.AutoField):  # BigAutoField too
        values.setdefault(pk.attname, None)
    if set(values) != set(names):
        raise TypeError(f"row_new({model.__name__}): missing {sorted(set(names) - set(values))}"
                        f", unknown {sorted(set(values) - set(names))}")
    return _built(model, names, [values[n] for n in names], None)


def _instances(model, rows, db) -> list:
    converters = _converters(model, db.vendor)
    names, alias = _attnames(model), db.alias
    out = []
    for row in rows:
        values = list(row)
        for n, (funcs, col) in enumerate(converters):
            for func in funcs:
                values[n] = func(values[n], col, db)
        out.append(_built(model, names, values, alias))
    return out


def rows_fetch(model, where: str, params, *, order_by: str = "", for_update: bool = False,
               limit: int = 0) -> list:
    """Instances of `model` for `SELECT … FROM table WHERE {where} ORDER BY {order_by}
    LIMIT {limit}`, locked `FOR UPDATE` where the database has it; columns are named as in
    the table."""
    return rows_fetch_together((model, where, params, order_by, for_update, limit))[0]


class Joined(NamedTuple):
    """A query for `rows_fetch_together` whose SQL selects the columns of several models
    (`columns_sql(model)` of each, in order), then any other values: each row comes back as
    a tuple of one instance per model followed by those values."""

    models: tuple
    sql: str
    params: list


def _joined(query: Joined, rows: list, db) -> list[tuple]:
    out, start = [[] for _ in rows], 0
    for model in query.models:
        end = start + len(_columns(model))
        for found, built in zip(out, _instances(model, [r[start:end] for r in rows], db),
                                strict=True):
            found.append(built)
        start = end
    return [(*found, *row[start:]) for found, row in zip(out, rows, strict=True)]


def _statement(query, db) -> tuple[str, list]:
    if isinstance(query, Joined):
        return query.sql, query.params
    model, where, params, order_by, for_update, limit = query
    return _fetch_sql(model, where, order_by, for_update, limit, db.vendor), params


def _results(query, rows: list, db) -> list:
    return _joined(query, rows, db) if isinstance(query, Joined) else \
        _instances(query[0], rows, db)


def rows_fetch_together(*queries) -> list[list]:
    """Several `rows_fetch` at once, each query a tuple (model, where, params, order_by,
    for_update[, limit]) or a `Joined`, executed in order; on PostgreSQL in one round trip
    (a psycopg pipeline), so a query after a `FOR UPDATE` one reads what the lock protects.
    A single query is simply run (a pipeline of one would only add its own overhead)."""
    db = _db()
    queries = [(*q, 0) if len(q) == 5 and not isinstance(q, Joined) else q for q in queries]
    if db.vendor != "postgresql" or len(queries) == 1:
        out = []
        for query in queries:
            with _cursor(db) as cursor:
                _execute(cursor, db, *_statement(query, db))
                out.append(_results(query, cursor.fetchall(), db))
        return out
    cursors = [_cursor(db) for _ in queries]  # connects if needed, before the pipeline
    try:
        with db.wrap_database_errors, db.connection.pipeline():
            for cursor, query in zip(cursors, queries, strict=True):
                _execute(cursor, db, *_statement(query, db))
        return [_results(q, c.fetchall(), db) for q, c in zip(queries, cursors, strict=True)]
    finally:
        for cursor in cursors:
            cursor.close()


@cache
def _update_sql(model, fields: tuple, vendor: str) -> tuple:
    meta = model._meta
    targets = tuple(meta.get_field(name) for name in fields)
    sets = ", ".join(f"{quote(f.column)} = %s" for f in targets)
    sql = f"UPDATE {quote(meta.db_table)} SET {sets} WHERE {quote(meta.pk.column)} = %s"
    return sql, targets, _preparers(targets, vendor)


class RowChanged(RuntimeError):
    """A guarded `row_update` found the row no longer as expected."""


def row_update(obj, fields: tuple, *, expect: tuple[str, object] | None = None,
               enforced_by: str = "") -> None:
    """Save `fields` of `obj` (an `auto_now` field among them is set to now). With
    `expect=(field, value)` the row is updated only if that column still holds `value`,
    else `RowChanged` (a compare-and-set). `enforced_by` names a database constraint that
    already fails the transaction when the row is not as expected: the row count is then
    not read, so the write may travel with the COMMIT (`atomic_batched`). While writes are
    held (`writes_batched`), an update of a row already held for `obj` replaces it with one
    of both field lists, with the values `obj` holds now: the same end, one statement."""
    db = _db()
    fields = tuple(fields)
    if expect is None and _batch.writes:
        for n, held in enumerate(_batch.writes):
            if held.row is not None and held.row[0] is obj:
                del _batch.writes[n]
                fields = held.row[1] + tuple(f for f in fields if f not in held.row[1])
                break
    sql, targets, preparers = _update_sql(type(obj), fields, db.vendor)
    params = _prepared(preparers, [f.pre_save(obj, add=False) for f in targets], db)
    params.append(obj._meta.pk.get_db_prep_value(obj.pk, db))
    if expect is not None:
        field = obj._meta.get_field(expect[0])
        sql += f" AND {quote(field.column)} = %s"
        params.append(field.get_db_prep_value(expect[1], db))
    check = f"{obj._meta.label} {obj.pk}: {expect[0]} changed" \
        if expect and not enforced_by else None
    _write(db, sql, params, check, row=None if expect else (obj, fields),
           target=(obj._meta.db_table, obj.pk))


@cache
def _insert_sql(model, vendor: str) -> tuple:
    meta = model._meta
    fields = tuple(f for f in _columns(model) if not (f.primary_key and f.auto_created)
                   and not getattr(f, "db_returning", False))
    cols = ", ".join(quote(f.column) for f in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    return f"INSERT INTO {quote(meta.db_table)} ({cols}) VALUES ", row, fields, \
        _preparers(fields, vendor)


def insert_params_max(vendor: str) -> int:
    """Parameters per INSERT. PostgreSQL takes 65,535 and psycopg never parses a statement
    numbered by `_numbered`; elsewhere Django converts the placeholders of every statement,
    so they stay short."""
    return 2000 if vendor == "postgresql" else 50


def rows_insert(model, objs: list, *, returning: bool = False, now: bool = True) -> None:
    """Insert `objs`, as many rows per statement as `insert_params_max` allows.
    With `returning` their auto-increment ids are read back (`RETURNING`), at once (batched
    writes go with it in the same round trip) or, with `now=False`, when the batch is next
    sent (`writes_batched`)."""
    if not objs:
        return
    db = _db()
    head, row, fields, preparers = _insert_sql(model, db.vendor)
    per_statement = max(1, insert_params_max(db.vendor) // len(fields))
    pk = model._meta.pk
    for start in range(0, len(objs), per_statement):
        chunk = objs[start:start + per_statement]
        values = []
        for obj in chunk:
            values.extend(_prepared(preparers, [f.pre_save(obj, add=True) for f in fields], db))
        sql = head + ", ".join([row] * len(chunk))
        target = (model._meta.db_table, None)
        if not returning:
            _write(db, sql, values, None, target=target)
            continue
        _write(db, f"{sql} RETURNING {quote(pk.column)}", values, None,
               on_rows=partial(_ids_set, chunk, db.alias),
               now=now and start + per_statement >= len(objs), target=target)


def _ids_set(objs: list, alias: str, rows: list) -> None:
    for obj, (value,) in zip(objs, rows, strict=True):
        obj.pk = value
        obj._state.adding, obj._state.db = False, alias


# --- batched writes ------------------------------------------------------------------------

class _Held(NamedTuple):
    """A write held by `writes_batched`."""
    sql: str
    params: list
    check: str | None  # RowChanged's message if its row count is not 1
    on_rows: Callable | None  # receives its rows
    row: tuple | None  # (instance, fields) of a plain update (`row_update`)
    target: tuple  # (table, primary key of the row updated), or (table, None): an insert


class _Batch(threading.local):
    writes: list[_Held] | None = None
    flushing = False


_batch = _Batch()


def _write(db, sql: str, params: list, check: str | None, *, target: tuple, on_rows=None,
           now: bool = False, row: tuple | None = None) -> None:
    """Run (or hold, when batching) one write; `target`: (table, primary key) of an update,
    (table, None) of an insert; `on_rows` receives its rows; `now`: send the batch at once;
    `row`: (instance, fields) of a plain update, which a later update of the same instance
    may take over (`row_update`)."""
    if _batch.writes is not None:
        _batch.writes.append(_Held(sql, params, check, on_rows, row, target))
        if now:
            writes_flush()
        return
    with _cursor(db) as cursor:
        _execute(cursor, db, sql, params)
        if check and cursor.rowcount != 1:
            raise RowChanged(check)
        if on_rows is not None:
            on_rows(cursor.fetchall())


def _flush_first(execute, sql, params, many, context):
    if _batch.writes and not _batch.flushing:
        writes_flush()
    return execute(sql, params, many, context)


def _groups(writes: list[_Held]) -> list[list[_Held]]:
    """The held writes in order, consecutive ones together where they may run as one
    statement (`_grouped_sql`): the parts of such a statement all see the database as it
    was before it, in no set order. So a group takes no write whose row count or rows are
    read, and starts again at a write whose table it has written the other way (an update
    after an insert might miss the inserted row) or whose row it has already updated. Rows
    of one table inserted together, or distinct rows updated together, do not depend on
    each other."""
    groups, group, kinds, updated = [], [], {}, set()
    for held in writes:
        alone = bool(held.check or held.on_rows)
        table, pk = held.target
        kind = "insert" if pk is None else "update"
        if group and (alone or kinds.get(table, kind) != kind or held.target in updated):
            groups.append(group)
            group, kinds, updated = [], {}, set()
        if alone:
            groups.append([held])
            continue
        group.append(held)
        kinds[table] = kind
        if pk is not None:
            updated.add(held.target)
    if group:
        groups.append(group)
    return groups


@lru_cache(maxsize=512)
def _grouped_sql(statements: tuple[str, ...]) -> str:
    """One statement of several writes: all but the last as data-modifying `WITH` parts,
    the last as the main statement."""
    parts = [f"w{n} AS ({sql})" for n, sql in enumerate(statements[:-1])]
    return f"WITH {', '.join(parts)} {statements[-1]}"


def writes_flush(*, commit: bool = False) -> None:
    """Send the batched writes now, in one round trip (`commit`: end the transaction with
    them, unless a row count or rows are to be read, or the transaction is to roll back).
    Writes that may go together are one statement (`_groups`); statements share a cursor,
    but for those whose row count or rows are read."""
    writes, _batch.writes = _batch.writes, []
    if not writes:
        return
    db = _db()
    shared = _cursor(db)  # connects if needed, before the pipeline starts
    own = []
    commit = commit and not db.needs_rollback \
        and not any(held.check or held.on_rows for held in writes)
    _batch.flushing = True
    try:
        with db.wrap_database_errors, db.connection.pipeline():
            for group in _groups(writes):
                held = group[0]
                if held.check or held.on_rows:
                    own.append((_cursor(db), held.check, held.on_rows))
                    _execute(own[-1][0], db, held.sql, held.params)
                elif len(group) == 1:
                    _execute(shared, db, held.sql, held.params)
                else:
                    _execute(shared, db, _grouped_sql(tuple(h.sql for h in group)),
                             [value for h in group for value in h.params])
            if commit:  # on the psycopg cursor: a COMMIT is neither counted nor prepared
                shared.cursor.execute("COMMIT", prepare=False)
        for cursor, check, on_rows in own:
            if check and cursor.rowcount != 1:
                raise RowChanged(check)
            if on_rows is not None:
                on_rows(cursor.fetchall())
    finally:
        _batch.flushing = False
        for cursor in [shared, *(c for c, _check, _on_rows in own)]:
            cursor.close()


@contextmanager
def writes_batched(*, commit: bool = False):
    """Inside a transaction on PostgreSQL: `row_update` and `rows_insert` are held and sent
    together in one round trip (a psycopg pipeline) just before the next other statement
    (so every read sees them) and when the block ends (`commit`: with the COMMIT, see
    `atomic_batched`). Elsewhere, or nested, it does nothing. Errors of a held write
    surface at that moment, inside the transaction."""
    db = _db()
    if db.vendor != "postgresql" or _batch.writes is not None:
        yield
        return
    _batch.writes = []
    db.execute_wrappers.append(_flush_first)
    try:
        yield
        writes_flush(commit=commit)
    finally:
        db.execute_wrappers.remove(_flush_first)
        _batch.writes = None


@contextmanager
def atomic_batched():
    """`transaction.atomic()` around `writes_batched()`. As the outermost block on
    PostgreSQL, its last writes and the COMMIT go in one round trip: Django's commit then
    finds the transaction ended and runs the `on_commit` callbacks as usual. It does not
    when a held write's row count is still to be read (`row_update(expect=…)`), so nothing
    commits before its check; a failed write fails the COMMIT with it."""
    with transaction.atomic():
        db = _db()
        outermost = db.vendor == "postgresql" and len(db.atomic_blocks) == 1
        with writes_batched(commit=outermost):
            yield
