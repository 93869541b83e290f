"""Break-glass and email links in a real browser (Playwright + Chromium): a person with the
override permission forces a gate through from the run page, the badge shows, someone else
marks the override reviewed from the queue while it polls, and an approver follows an
emailed link, signs in, and decides with a POST."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core import mail

from fcore.members import member_set
from gates.models import Gate, GateStatus
from runs.models import Run

from .test_console_browser import (  # noqa: F401  (fixtures)
    PASSWORD,
    SHOTS,
    browser,
    paused_run,
    people,
    sign_in,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_break_glass_from_the_run_page(live_server, browser, people):  # noqa: F811
    member_set(tenant=people, username="otto", groups=["operators"], password=PASSWORD)
    otto = get_user_model().objects.get(username="otto")
    otto.user_permissions.add(Permission.objects.get(codename="override_gate"))
    run = paused_run(people)
    gate = Gate.objects.get(run=run)
    page = browser.new_page()
    sign_in(page, live_server.url, "otto")
    page.goto(f"{live_server.url}/console/runs/{run.run_id}/")
    card = page.locator(f"#gate-{gate.id}")
    card.get_by_text("Override (break-glass)").click()
    card.get_by_label("Justification").fill("INC-7: payment run closes at 17:00")
    card.get_by_role("button", name=f"Override gate {gate.id}").click()
    page.get_by_text("Overridden — needs review").first.wait_for(timeout=10_000)
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "override.png"), full_page=True)
    gate.refresh_from_db()
    assert gate.status == GateStatus.OVERRIDDEN and gate.needs_review
    assert Run.objects.get(pk=run.pk).status == "running"
    assert "INC-7: payment run closes at 17:00" in card.inner_text()

    member_set(tenant=people, username="rita", groups=["auditors"], password=PASSWORD)
    rita = get_user_model().objects.get(username="rita")
    rita.user_permissions.add(Permission.objects.get(codename="review_override"))
    reviewer = browser.new_page()
    sign_in(reviewer, live_server.url, "rita")
    row = reviewer.locator(f"#review-gate-{gate.id}")
    row.get_by_text("Mark reviewed").click()
    row.get_by_label("Review note").fill("confirmed with treasury")
    reviewer.wait_for_timeout(3_500)  # a queue poll swaps the list; the open form stays
    row.get_by_role("button", name=f"Mark override of gate {gate.id} reviewed").click()
    reviewer.get_by_text(f"Override of gate {gate.id} marked reviewed.").wait_for()
    assert reviewer.locator(f"#review-gate-{gate.id}").count() == 0
    gate.refresh_from_db()
    assert not gate.needs_review and gate.reviewed_by == "user:rita"
    assert gate.review_note == "confirmed with treasury"


def test_an_emailed_link_asks_for_sign_in_and_decides_only_on_post(
        live_server, browser, people, settings):  # noqa: F811
    settings.FCORE_PUBLIC_URL = live_server.url
    get_user_model().objects.filter(username="adam").update(email="adam@example.invalid")
    run = paused_run(people)
    gate = Gate.objects.get(run=run)
    (message,) = [m for m in mail.outbox if "adam@example.invalid" in m.to]
    (link,) = re.findall(r"http://\S+/review\?t=\S+", message.body)
    page = browser.new_page()
    page.goto(link)
    page.get_by_label("Username").fill("adam")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Approve").wait_for()
    gate.refresh_from_db()
    assert gate.status == GateStatus.OPEN and not gate.approvals.exists()
    page.get_by_label("Comment").fill("approved from my inbox")
    page.get_by_role("button", name="Approve").click()
    page.wait_for_url(f"{live_server.url}/console/runs/{run.run_id}/")
    gate.refresh_from_db()
    assert gate.status == GateStatus.APPROVED
    assert gate.approvals.get().comment == "approved from my inbox"
    page.goto(link)
    assert "already been used" in page.content()
