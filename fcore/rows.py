"""Named SELECTs of every column of a model, run through Django's cursor and loaded as
model instances.

For the few reads made for every request or every step, where building and compiling an
ORM query costs several times running it (about 1 ms of CPU against 0.2 ms here;
docs/operations.md, "The API under load"). The statement is written once with its
purpose; its column list and its JSON fields come from the model's `_meta` API, so they
follow the model. On PostgreSQL the rows are loaded as the ORM loads them (Django reads
jsonb as text; its JSONField decodes it, as here); on SQLite, whose backend converts
values column by column, they go through the ORM's `raw()`.
"""

import json

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import JSONField


def instance_from_row(db, model, fields: tuple, json_at: tuple, row):
    """An instance of `model` from a PostgreSQL row whose first values are `fields`, the
    JSON ones (positions `json_at`) still text."""
    values = list(row[:len(fields)])
    for n in json_at:
        values[n] = None if values[n] is None else json.loads(values[n])
    return model.from_db(db.alias, fields, values)


class Rows:
    """`sql` (a SELECT with `{columns}` for every column of `model`, table alias `alias`,
    then one column for each name of `extra`) and its rows as instances, the extra values
    as attributes of those names."""

    def __init__(self, model, sql: str, *, alias: str, extra: tuple = ()):
        fields = model._meta.concrete_fields
        self.model, self.extra = model, extra
        self.fields = tuple(f.attname for f in fields)
        self.json_at = tuple(n for n, f in enumerate(fields) if isinstance(f, JSONField))
        self.sql = sql.format(columns=", ".join(f'{alias}."{f.column}"' for f in fields))

    def loaded(self, db, rows) -> list:
        """Instances from rows fetched from PostgreSQL."""
        instances = []
        for row in rows:
            instance = instance_from_row(db, self.model, self.fields, self.json_at, row)
            for name, value in zip(self.extra, row[len(self.fields):], strict=True):
                setattr(instance, name, value)
            instances.append(instance)
        return instances

    def first(self, params: list):
        """The first instance `fetch` gives, or None."""
        return next(iter(self.fetch(params)), None)

    def fetch(self, params: list) -> list:
        """Run the statement with `params`: its rows as instances."""
        db = connections[DEFAULT_DB_ALIAS]
        if db.vendor != "postgresql":
            return list(self.model.objects.raw(self.sql, params))
        with db.cursor() as cursor:
            cursor.execute(self.sql, params)
            return self.loaded(db, cursor.fetchall())
