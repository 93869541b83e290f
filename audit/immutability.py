"""Database triggers that refuse UPDATE, DELETE and TRUNCATE of audit events.

Installed by migration 0002 on PostgreSQL and SQLite. `triggers_suspended` drops and
restores them: it is what a database superuser could do, and tests use it to simulate a
rewrite (and to clean up between transactional tests).
"""

from contextlib import contextmanager

TABLE = "audit_auditevent"

POSTGRES_INSTALL = f"""
CREATE OR REPLACE FUNCTION fc_audit_refuse() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION USING ERRCODE = '42501',
    MESSAGE = 'audit events are immutable (' || TG_OP || ' refused)';
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS fc_audit_no_update ON {TABLE};
DROP TRIGGER IF EXISTS fc_audit_no_truncate ON {TABLE};
CREATE TRIGGER fc_audit_no_update BEFORE UPDATE OR DELETE ON {TABLE}
  FOR EACH ROW EXECUTE FUNCTION fc_audit_refuse();
CREATE TRIGGER fc_audit_no_truncate BEFORE TRUNCATE ON {TABLE}
  FOR EACH STATEMENT EXECUTE FUNCTION fc_audit_refuse();
"""
POSTGRES_DROP = f"""
DROP TRIGGER IF EXISTS fc_audit_no_update ON {TABLE};
DROP TRIGGER IF EXISTS fc_audit_no_truncate ON {TABLE};
"""

SQLITE_INSTALL = [
    f"""CREATE TRIGGER IF NOT EXISTS fc_audit_no_update BEFORE UPDATE ON {TABLE}
        BEGIN SELECT RAISE(ABORT, 'audit events are immutable (UPDATE refused)'); END;""",
    f"""CREATE TRIGGER IF NOT EXISTS fc_audit_no_delete BEFORE DELETE ON {TABLE}
        BEGIN SELECT RAISE(ABORT, 'audit events are immutable (DELETE refused)'); END;""",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS fc_audit_no_update;",
    "DROP TRIGGER IF EXISTS fc_audit_no_delete;",
]


def install(schema_editor_or_cursor, vendor: str) -> None:
    statements = [POSTGRES_INSTALL] if vendor == "postgresql" else SQLITE_INSTALL
    for sql in statements:
        schema_editor_or_cursor.execute(sql)


def drop(schema_editor_or_cursor, vendor: str) -> None:
    statements = [POSTGRES_DROP] if vendor == "postgresql" else SQLITE_DROP
    for sql in statements:
        schema_editor_or_cursor.execute(sql)


@contextmanager
def triggers_suspended(connection):
    """Drop the immutability triggers for the block, then put them back."""
    with connection.cursor() as cursor:
        drop(cursor, connection.vendor)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            install(cursor, connection.vendor)
