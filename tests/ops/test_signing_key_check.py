"""Production refuses to start without a configured checkpoint signing key (issue 22 item
7): the system check fcore.E002, and no key file made behind the operator's back."""

import base64
import os
import subprocess
import sys

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from .test_security import ROOT, production_env

pytestmark = pytest.mark.django_db


def e001() -> list:
    return [m for m in run_checks() if m.id == "fcore.E002"]


def run(args, env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_production_without_a_signing_key_is_a_check_error(settings):
    settings.PRODUCTION = True
    settings.FCORE_SIGNING_KEY, settings.FCORE_SIGNING_KEY_FILE = "", ""
    (error,) = e001()
    assert error.is_serious() and "none is configured" in error.msg
    assert "FCORE_SIGNING_KEY" in error.hint and "FCORE_SIGNING_KEY_FILE" in error.hint
    with pytest.raises(SystemCheckError, match="fcore.E002"):
        call_command("check")


@pytest.mark.parametrize(("key", "problem"), [
    ("not base64!", "not valid base64"),
    (base64.b64encode(b"short").decode(), "32 bytes"),
])
def test_production_with_an_unusable_key_is_a_check_error(settings, key, problem):
    settings.PRODUCTION = True
    settings.FCORE_SIGNING_KEY = key
    (error,) = e001()
    assert problem in error.msg and "FCORE_SIGNING_KEY" in error.msg
    assert key not in error.msg  # a key is never echoed back


def test_an_unreadable_key_file_is_a_check_error(settings, tmp_path):
    settings.PRODUCTION = True
    settings.FCORE_SIGNING_KEY, settings.FCORE_SIGNING_KEY_FILE = "", str(tmp_path / "none")
    (error,) = e001()
    assert "FCORE_SIGNING_KEY_FILE" in error.msg


def test_a_good_key_or_a_non_production_setup_passes(settings, tmp_path):
    settings.PRODUCTION = True
    settings.FCORE_SIGNING_KEY = base64.b64encode(os.urandom(32)).decode()
    assert e001() == []
    key_file = tmp_path / "signing_key"
    key_file.write_text(base64.b64encode(os.urandom(32)).decode())
    settings.FCORE_SIGNING_KEY, settings.FCORE_SIGNING_KEY_FILE = "", str(key_file)
    assert e001() == []
    settings.PRODUCTION, settings.FCORE_SIGNING_KEY_FILE = False, ""
    assert e001() == []


def test_a_production_process_without_a_key_refuses_to_start_and_makes_none(tmp_path):
    env = production_env(tmp_path)
    del env["FCORE_SIGNING_KEY"]
    env.pop("FCORE_SIGNING_KEY_FILE", None)
    for args in (["check"], ["serve", "--port", "9"]):
        result = run(args, env)
        assert result.returncode != 0, result.stdout + result.stderr
        assert "fcore.E002" in result.stderr and "FCORE_SIGNING_KEY" in result.stderr
    assert not (tmp_path / "signing_key").exists()  # no per-machine key
    assert run(["check"], production_env(tmp_path)).returncode == 0
