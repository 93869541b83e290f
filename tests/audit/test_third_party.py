"""FC's checkpoints and attestations verified by code FC did not write:

- the checkpoint note with golang.org/x/mod/sumdb/note (Debian's golang-golang-x-mod-dev,
  built offline by Debian's golang-go in GOPATH mode from /usr/share/gocode);
- the DSSE envelope with securesystemslib and the in-toto Statement v1 with
  in-toto-attestation (PyPI; neither is imported by FC's own verifier).
"""

import base64
import copy
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from audit.checkpoints import checkpoint_seal
from tests.conftest import service_missing

pytestmark = pytest.mark.django_db

GOPATH = Path("/usr/share/gocode")
NOTE_PACKAGE = GOPATH / "src/golang.org/x/mod/sumdb/note"
GO_VERIFIER = """package main

import (
	"fmt"
	"os"

	"golang.org/x/mod/sumdb/note"
)

func main() {
	verifier, err := note.NewVerifier(os.Args[1])
	if err != nil {
		fmt.Println("bad verifier key:", err)
		os.Exit(2)
	}
	msg, err := os.ReadFile(os.Args[2])
	if err != nil {
		fmt.Println(err)
		os.Exit(2)
	}
	n, err := note.Open(msg, note.VerifierList(verifier))
	if err != nil {
		fmt.Println("FAILED:", err)
		os.Exit(1)
	}
	fmt.Printf("OK %s\\n%s", n.Sigs[0].Name, n.Text)
}
"""


@pytest.fixture(scope="module")
def go_verifier(tmp_path_factory):
    go = shutil.which("go")
    if go is None or not NOTE_PACKAGE.is_dir():
        service_missing("go with golang.org/x/mod/sumdb/note (apt: golang-go "
                        "golang-golang-x-mod-dev)")
    work = tmp_path_factory.mktemp("go-note")
    (work / "main.go").write_text(GO_VERIFIER)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(work), "GOPATH": str(GOPATH),
           "GO111MODULE": "off", "GOFLAGS": "", "GOPROXY": "off", "GOCACHE": str(work / "cache"),
           "CGO_ENABLED": "0"}
    subprocess.run([go, "build", "-o", str(work / "verify"), "main.go"], cwd=work, env=env,
                   check=True, capture_output=True, timeout=300)
    return work / "verify"


def test_go_sumdb_note_verifies_fc_checkpoints(api, pt004, completed_run, go_verifier,
                                               tmp_path):
    checkpoint_seal(tenant=pt004)
    text = api.get("/workflows/audit/checkpoint").content.decode()
    vkey = api.get("/workflows/audit/keys").json()[-1]["vkey"]
    path = tmp_path / "checkpoint"
    path.write_text(text, encoding="utf-8")
    ok = subprocess.run([go_verifier, vkey, path], capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stdout
    assert ok.stdout == f"OK {vkey.split('+')[0]}\n{text.split(chr(10) * 2)[0]}\n"

    lines = text.split("\n")
    lines[1] = str(int(lines[1]) + 1)  # a bigger tree than was signed
    path.write_text("\n".join(lines), encoding="utf-8")
    bad = subprocess.run([go_verifier, vkey, path], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1 and "FAILED" in bad.stdout


def test_securesystemslib_and_in_toto_verify_the_attestation(api, completed_run):
    from google.protobuf import json_format
    from in_toto_attestation.v1 import statement_pb2
    from in_toto_attestation.v1.statement import Statement
    from securesystemslib.dsse import Envelope
    from securesystemslib.exceptions import VerificationError
    from securesystemslib.signer import SSlibKey

    envelope = api.get(f"/workflows/runs/{completed_run}/attestation").json()
    keys = api.get("/workflows/audit/keys").json()
    key = keys[-1]
    public_hex = base64.b64decode(key["public_key"]).hex()
    sslib_key = SSlibKey(key["key_id"], "ed25519", "ed25519", {"public": public_hex})
    parsed = Envelope.from_dict(copy.deepcopy(envelope))  # from_dict consumes its input
    assert key["key_id"] in parsed.verify([sslib_key], 1)
    assert parsed.payload_type == "application/vnd.in-toto+json"

    proto = json_format.Parse(parsed.payload,
                              statement_pb2.Statement())
    statement = Statement.copy_from_pb(proto)
    statement.validate()
    run = api.get(f"/workflows/runs/{completed_run}").json()
    subject = json.loads(parsed.payload)["subject"]
    assert subject == [{"name": f"run/{completed_run}",
                        "digest": {"sha256": run["workflow_hash"]}}]
    assert proto.predicate["run_id"] == completed_run

    envelope["payload"] = base64.b64encode(parsed.payload.replace(
        b'"completed"', b'"failed"')).decode()
    with pytest.raises(VerificationError):
        Envelope.from_dict(envelope).verify([sslib_key], 1)


def test_fc_verifier_does_not_import_the_third_party_libraries():
    source = "".join(p.read_text() for p in Path("audit").glob("verify*.py"))
    source += Path("audit/dsse.py").read_text() + Path("audit/note.py").read_text()
    assert "securesystemslib" not in source and "in_toto" not in source
