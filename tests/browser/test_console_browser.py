"""The console in a real browser: Playwright driving Debian's Chromium against a live server.

An approver signs in, a run pauses at a policy gate while the page is open and appears
without a reload, the approver approves it with a comment, and the run page follows the run
to completion without a reload. The run's creator sees why they cannot decide. Screenshots
go to docs/screenshots/ (README.md shows them).
"""

import os
import re
import shutil
from pathlib import Path

import pytest

from fcore.members import member_set
from gates.models import Gate, GateStatus
from runs.models import Run
from runs.services import run_create, step_report
from tests.conftest import load_bundle, service_missing

# Playwright's sync API runs an event loop in this thread; the ORM calls the test makes
# around it are ordinary synchronous calls.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PASSWORD = "browser-test-pass"


@pytest.fixture
def browser():
    if not shutil.which(CHROMIUM):
        service_missing(f"Chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--headless", "--disable-gpu",
                  "--disable-background-networking"])
        yield browser
        browser.close()


@pytest.fixture
def people(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    load_bundle("docs/examples/pt004.yaml")
    from fcore.models import Tenant

    tenant = Tenant.objects.get(slug="tenant_omega")
    member_set(tenant=tenant, username="adam", groups=["approvers"], password=PASSWORD)
    member_set(tenant=tenant, username="olivia", groups=["operators", "approvers"],
               password=PASSWORD)
    return tenant


def sign_in(page, base_url, username):
    page.goto(f"{base_url}/console/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base_url}/console/")


def paused_run(tenant, creator="user:olivia"):
    run, _ = run_create(tenant=tenant, workflow="pt004_execution_spine",
                        input={"amount": 25000}, actor=creator)
    step_report(tenant=tenant, run_id=run.run_id, step_id="step_1", actor=creator,
                status="succeeded", output={})
    run.refresh_from_db()
    assert run.status == "paused"
    return run


def test_approver_sees_a_new_gate_without_reloading_and_approves_it(live_server, browser,
                                                                   people):
    SHOTS.mkdir(exist_ok=True)
    page = browser.new_page()
    sign_in(page, live_server.url, "adam")
    assert page.locator(".gate-card").count() == 0

    run = paused_run(people)  # while the page is open
    gate = Gate.objects.get(run=run)
    card = page.locator(f"#gate-{gate.id}")
    card.wait_for(timeout=10_000)  # the queue polls; no reload
    assert "(1)" in page.title()
    page.screenshot(path=str(SHOTS / "queue.png"), full_page=True)

    card.get_by_label("Comment").fill("invoice checked")
    card.get_by_role("button", name="Approve").click()
    page.locator(f"#gate-{gate.id}").wait_for(state="detached", timeout=10_000)

    gate.refresh_from_db()
    assert gate.status == GateStatus.APPROVED
    assert gate.approvals.get().comment == "invoice checked"
    assert Run.objects.get(pk=run.pk).status == "running"

    page.goto(f"{live_server.url}/console/runs/{run.run_id}/")
    assert "FC-GATE-003" in page.content()
    status = page.locator("#run-status")
    assert status.inner_text().lower() == "running"
    for step_id in ("step_2", "step_3", "step_4", "step_5"):  # the executor reports
        step_report(tenant=people, run_id=run.run_id, step_id=step_id, actor="client:exec",
                    status="succeeded", output={"done": step_id})
    from playwright.sync_api import expect  # the page polls its live partial; no reload

    expect(status).to_have_text(re.compile("completed", re.I), timeout=15_000)
    assert page.locator('#run-live').get_attribute("hx-trigger") is None  # polling stopped
    assert page.locator('.step-graph g.node.status-succeeded').count() == 5
    assert page.locator("#receipts-status").inner_text() == "verify"
    page.screenshot(path=str(SHOTS / "run.png"), full_page=True)


def test_the_runs_creator_sees_why_they_cannot_decide(live_server, browser, people):
    run = paused_run(people, creator="user:olivia")
    gate = Gate.objects.get(run=run)
    page = browser.new_page()
    sign_in(page, live_server.url, "olivia")
    card = page.locator(f"#gate-{gate.id}")
    card.wait_for()
    assert "another approver must decide" in card.inner_text()
    assert card.get_by_role("button", name="Approve").is_disabled()
    gate.refresh_from_db()
    assert gate.status == GateStatus.OPEN
