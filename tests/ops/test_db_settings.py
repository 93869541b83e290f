"""Database settings from the environment: FCORE_DB_PREPARED_STATEMENTS turns psycopg's
server-side prepared statements off for a pooler in transaction mode."""

import os
import subprocess
import sys

import pytest

from fcore import settings as fcore_settings

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VARIABLE = "FCORE_DB_PREPARED_STATEMENTS"


ON = {"server_side_binding": True, "prepare_threshold": 5}
OFF = {"prepare_threshold": None}


@pytest.mark.parametrize(("value", "options"), [
    (None, ON),
    ("1", ON), ("on", ON), ("true", ON), ("YES", ON), (" True ", ON),
    ("0", OFF), ("off", OFF), ("false", OFF), ("no", OFF), ("OFF", OFF),
])
def test_prepared_statements_follow_the_variable(monkeypatch, value, options):
    if value is None:
        monkeypatch.delenv(VARIABLE, raising=False)
    else:
        monkeypatch.setenv(VARIABLE, value)
    assert fcore_settings._prepared_statements() == options


def _postgres_options(tmp_path, **env) -> str:
    """DATABASES["default"]["OPTIONS"] as a fresh process configured for PostgreSQL sees
    them (settings only: nothing connects)."""
    base = {k: v for k, v in os.environ.items() if k != VARIABLE}
    script = ("import django; django.setup(); from django.conf import settings; "
              "print(settings.DATABASES['default']['OPTIONS'])")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
        env={**base, "DJANGO_SETTINGS_MODULE": "fcore.settings", "FCORE_VAR_DIR": str(tmp_path),
             "DATABASE_URL": "postgres://fc@db.invalid:5432/fc", **env})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_postgres_prepares_statements_by_default(tmp_path):
    assert _postgres_options(tmp_path) == str(ON)


def test_postgres_prepared_statements_can_be_turned_off(tmp_path):
    assert _postgres_options(tmp_path, **{VARIABLE: "off"}) == str(OFF)
