"""The offline verifier installs alone: the `fc-verify` distribution (verifier/) is built,
installed into a scratch environment with only its own dependencies — no Django, no FC —
and verifies a pack this server produced, refuses a changed one and pins a key."""

import json
import subprocess

import pytest
from django.db import connection

from tests.install import ROOT, child_env, venv_create, wheel_build

pytestmark = pytest.mark.django_db


@pytest.fixture
def fc_verify(tmp_path):
    if connection.vendor != "sqlite":
        pytest.skip("the verifier never touches a database: once is enough (SQLite run)")
    return venv_create(tmp_path / "venv", wheel_build(ROOT / "verifier", tmp_path / "dist"))


def test_the_verifier_alone_checks_a_pack(fc_verify, api, completed_run, tmp_path):
    installed = subprocess.run(
        [fc_verify / "python", "-c", "import importlib.metadata as m, json; "
         "print(json.dumps([d.metadata['Name'].lower() for d in m.distributions()]))"],
        capture_output=True, text=True, check=True, env=child_env(), cwd=tmp_path)
    names = set(json.loads(installed.stdout))
    assert "fc-verify" in names
    assert not names & {"django", "federation-core", "djangorestframework", "psycopg"}

    pack = api.get(f"/workflows/runs/{completed_run}/evidence").json()
    path = tmp_path / "pack.json"
    path.write_text(json.dumps(pack), encoding="utf-8")

    def verify(*args):
        return subprocess.run([fc_verify / "fc-verify", *map(str, args)], capture_output=True,
                              text=True, env=child_env(), cwd=tmp_path, timeout=60)

    ok = verify(path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith(f"OK {path}")
    key = pack["checkpoint"]["public_key"]
    assert "(from --public-key)" in verify(path, "--public-key", key).stdout

    pack["events"][0]["data"]["input_hash"] = "0" * 64
    path.write_text(json.dumps(pack), encoding="utf-8")
    changed = verify(path)
    assert changed.returncode == 1
    assert changed.stdout.startswith("FAILED events[0]")
