"""Gate email over real SMTP (issue 22 item 7): the FCORE_EMAIL_* settings reach Django's
SMTP backend, a gate email goes through STARTTLS or implicit TLS with the configured user
and password to a real server (aiosmtpd on 127.0.0.1 with a certificate made here), and the
password appears in no log line, error or stored row."""

import datetime
import ipaddress
import logging
import os
import socket
import ssl
import subprocess
import sys

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fcore.members import member_set
from gates.models import DeliveryStatus, EmailNotification
from gates.notify.email import email_send

from .test_email_links import start_payment

pytestmark = pytest.mark.django_db

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
USER, PASSWORD = "fc-mailer", "s3cret-smtp-Passw0rd"


@pytest.fixture
def people(pt004):
    """Two approvers with an email address: a gate opening mails both."""
    for username in ("adam", "amira"):
        member_set(tenant=pt004, username=username, groups=["approvers"],
                   email=f"{username}@example.invalid")
    return pt004


def certificate(tmp_path) -> tuple[str, str]:
    """A self-signed certificate for localhost/127.0.0.1: (cert path, key path)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "smtp.crt", tmp_path / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def encrypted(server) -> bool:
    """The SMTP session runs over TLS (after STARTTLS, or implicit from the start)."""
    return server.transport.get_extra_info("ssl_object") is not None


class Mailbox:
    """What the SMTP server accepted, and whether each session was encrypted and signed in."""

    def __init__(self):
        self.messages, self.logins = [], []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append({"to": envelope.rcpt_tos, "tls": encrypted(server),
                              "authenticated": session.authenticated,
                              "content": envelope.content.decode()})
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == USER.encode()
              and auth_data.password == PASSWORD.encode())
        self.logins.append((mechanism, ok, encrypted(server)))
        return AuthResult(success=ok, handled=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp_server(tmp_path, monkeypatch):
    """Start an SMTP server requiring TLS and AUTH; mode "starttls" or "ssl"."""
    cert_path, key_path = certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", cert_path)  # the client trusts this certificate
    started = []

    def start(mode: str):
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_path, key_path)
        mailbox, port = Mailbox(), free_port()
        # aiosmtpd's auth_require_tls means STARTTLS; on implicit TLS the whole session is
        # encrypted (the handler records it) and AUTH is offered from the start
        tls = ({"tls_context": context, "require_starttls": True, "auth_require_tls": True}
               if mode == "starttls" else {"ssl_context": context, "auth_require_tls": False})
        controller = Controller(mailbox, hostname="127.0.0.1", port=port,
                                authenticator=mailbox.authenticate, auth_required=True,
                                **tls)
        controller.start()
        started.append(controller)
        return mailbox, port

    yield start
    for controller in started:
        controller.stop()


def smtp_settings(settings, port, *, mode, password=PASSWORD):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "localhost", port
    settings.EMAIL_USE_TLS, settings.EMAIL_USE_SSL = mode == "starttls", mode == "ssl"
    settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD = USER, password
    settings.EMAIL_TIMEOUT = 10


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
@pytest.mark.parametrize("mode", ["starttls", "ssl"])
def test_gate_email_goes_over_tls_with_the_configured_login(people, advance, settings,
                                                            smtp_server, mode):
    mailbox, port = smtp_server(mode)
    smtp_settings(settings, port, mode=mode)
    gate = start_payment(people, advance)
    notes = list(EmailNotification.objects.filter(gate=gate))
    assert notes and all(n.status == DeliveryStatus.DELIVERED for n in notes), \
        [n.last_error for n in notes]
    assert sorted(m["to"][0] for m in mailbox.messages) == sorted(n.email for n in notes)
    assert all(m["tls"] and m["authenticated"] for m in mailbox.messages)
    assert all(ok and encrypted for _, ok, encrypted in mailbox.logins)
    assert "Approval needed: vendor_payment" in mailbox.messages[0]["content"]


def test_a_wrong_password_fails_the_send_and_is_never_logged(people, advance, settings,
                                                             smtp_server, caplog):
    mailbox, port = smtp_server("starttls")
    wrong = "wrong-Passw0rd-never-logged"
    smtp_settings(settings, port, mode="starttls", password=wrong)
    settings.FCORE_WEBHOOK_BACKOFF_S = 0
    with caplog.at_level(logging.DEBUG):
        gate = start_payment(people, advance)
        notes = list(EmailNotification.objects.filter(gate=gate))
        for note in notes:
            email_send(note.pk)
    notes = list(EmailNotification.objects.filter(gate=gate))
    assert notes and all(n.status == DeliveryStatus.FAILED for n in notes)
    assert all("SMTPAuthenticationError" in n.last_error for n in notes)
    assert mailbox.messages == [] and mailbox.logins and not any(ok for _, ok, _ in
                                                                 mailbox.logins)
    stored = " ".join(n.last_error for n in notes)
    assert "gate email" in caplog.text  # the failure was logged …
    for secret in (wrong, PASSWORD):  # … without the password
        assert secret not in caplog.text and secret not in stored


def backend_settings(tmp_path, **env) -> dict:
    """The SMTP backend's settings as a fresh process configured by `env` sees them."""
    script = ("import django, json; django.setup(); from django.core.mail import "
              "get_connection; c = get_connection('django.core.mail.backends.smtp.EmailBackend');"
              "print(json.dumps({'host': c.host, 'port': c.port, 'use_tls': c.use_tls, "
              "'use_ssl': c.use_ssl, 'username': c.username, 'timeout': c.timeout, "
              "'password_ok': c.password == 'pw from env or file'}))")
    base = {k: v for k, v in os.environ.items() if not k.startswith("FCORE_EMAIL")}
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                            text=True, env={**base, "DJANGO_SETTINGS_MODULE": "fcore.settings",
                                            "FCORE_VAR_DIR": str(tmp_path), **env})
    if result.returncode:
        return {"error": result.stderr}
    import json

    return json.loads(result.stdout)


def test_the_environment_reaches_the_smtp_backend(tmp_path):
    assert backend_settings(
        tmp_path, FCORE_EMAIL_HOST="smtp.example.invalid", FCORE_EMAIL_PORT="587",
        FCORE_EMAIL_USE_TLS="1", FCORE_EMAIL_HOST_USER="fc",
        FCORE_EMAIL_HOST_PASSWORD="pw from env or file", FCORE_EMAIL_TIMEOUT_S="7.5",
    ) == {"host": "smtp.example.invalid", "port": 587, "use_tls": True, "use_ssl": False,
          "username": "fc", "timeout": 7.5, "password_ok": True}
    secret_file = tmp_path / "smtp-password"
    secret_file.write_text("pw from env or file\n")
    got = backend_settings(tmp_path, FCORE_EMAIL_PORT="465", FCORE_EMAIL_USE_SSL="yes",
                           FCORE_EMAIL_HOST_PASSWORD_FILE=str(secret_file))
    assert (got["port"], got["use_ssl"], got["use_tls"], got["password_ok"]) == (
        465, True, False, True)
    defaults = backend_settings(tmp_path)
    assert (defaults["port"], defaults["use_tls"], defaults["use_ssl"], defaults["username"],
            defaults["timeout"]) == (25, False, False, "", 30.0)


def test_tls_and_ssl_together_or_an_unreadable_password_file_stop_the_start(tmp_path):
    both = backend_settings(tmp_path, FCORE_EMAIL_USE_TLS="1", FCORE_EMAIL_USE_SSL="1")
    assert "FCORE_EMAIL_USE_TLS" in both["error"] and "FCORE_EMAIL_USE_SSL" in both["error"]
    missing = backend_settings(tmp_path,
                               FCORE_EMAIL_HOST_PASSWORD_FILE=str(tmp_path / "absent"))
    assert "FCORE_EMAIL_HOST_PASSWORD_FILE" in missing["error"]
