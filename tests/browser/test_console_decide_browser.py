"""Deciding in the browser (Playwright + Chromium): bulk approve, reject with a comment,
keyboard shortcuts, filters kept while the queue polls, and the audit trail — with no
Content Security Policy violation on any page."""

import pytest

from gates.models import Gate, GateStatus
from runs.models import Run

from .test_console_browser import (  # noqa: F401  (fixtures)
    SHOTS,
    browser,
    paused_run,
    people,
    sign_in,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def page_of(browser):  # noqa: F811
    """A new page that records every CSP violation the browser reports."""
    pages = []

    def make():
        page = browser.new_page()
        page.csp_errors = []
        page.on("console", lambda msg: page.csp_errors.append(msg.text)
                if "Content Security Policy" in msg.text else None)
        pages.append(page)
        return page

    yield make
    for page in pages:
        assert page.csp_errors == [], page.csp_errors


def test_bulk_approve(live_server, page_of, people):  # noqa: F811
    runs = [paused_run(people) for _ in range(3)]
    gates = [Gate.objects.get(run=r) for r in runs]
    page = page_of()
    sign_in(page, live_server.url, "adam")
    for gate in gates[:2]:
        page.get_by_label(f"Select gate {gate.id}").check()
    page.locator("#bulk-comment").fill("batch of invoices checked")
    page.locator(f"#gate-{gates[0].id}").click(position={"x": 5, "y": 5})  # focus (j/k)
    page.screenshot(path=str(SHOTS / "queue.png"), full_page=False)
    page.get_by_role("button", name="Approve selected").click()
    page.get_by_text("2 approved; 2 resolved.").wait_for(timeout=10_000)
    page.locator(f"#gate-{gates[0].id}").wait_for(state="detached")
    for gate in gates:
        gate.refresh_from_db()
    assert [g.status for g in gates] == [GateStatus.APPROVED, GateStatus.APPROVED,
                                         GateStatus.OPEN]
    assert gates[0].approvals.get().comment == "batch of invoices checked"
    assert page.locator("#bulk-comment").input_value() == ""
    assert page.locator(f"#gate-{gates[2].id}").is_visible()
    assert "(1)" in page.title()


def test_reject_needs_a_comment_and_then_fails_the_run(live_server, page_of, people):  # noqa: F811
    run = paused_run(people)
    gate = Gate.objects.get(run=run)
    page = page_of()
    sign_in(page, live_server.url, "adam")
    card = page.locator(f"#gate-{gate.id}")
    card.get_by_role("button", name="Reject").click()
    page.get_by_text("A comment is required to reject a gate.").wait_for(timeout=10_000)
    gate.refresh_from_db()
    assert gate.status == GateStatus.OPEN
    card.get_by_label("Comment").fill("vendor is not on the contract list")
    card.get_by_role("button", name="Reject").click()
    page.get_by_text(f"Gate {gate.id} rejected").wait_for(timeout=10_000)
    gate.refresh_from_db()
    assert gate.status == GateStatus.REJECTED
    assert gate.approvals.get().comment == "vendor is not on the contract list"
    assert Run.objects.get(pk=run.pk).status == "failed"


def test_keyboard_shortcuts_decide_gates(live_server, page_of, people):  # noqa: F811
    first, second = paused_run(people), paused_run(people)
    g1, g2 = Gate.objects.get(run=first), Gate.objects.get(run=second)
    page = page_of()
    sign_in(page, live_server.url, "adam")
    page.keyboard.press("?")
    assert page.locator("#shortcut-help").get_attribute("open") is not None
    page.keyboard.press("?")
    page.keyboard.press("j")
    focused = page.locator(".gate-card.is-focused")
    assert focused.get_attribute("data-gate") == str(g1.id)
    page.keyboard.press("j")
    assert focused.get_attribute("data-gate") == str(g2.id)
    page.keyboard.press("k")
    assert focused.get_attribute("data-gate") == str(g1.id)
    # typing in a field never triggers a shortcut
    page.locator(f"#comment-{g1.id}").fill("")
    page.locator(f"#comment-{g1.id}").press("a")
    assert page.locator(f"#comment-{g1.id}").input_value() == "a"
    page.keyboard.press("Escape")
    page.locator(f"#comment-{g1.id}").fill("")
    page.locator(f"#gate-{g1.id}").click(position={"x": 5, "y": 5})
    page.keyboard.press("a")
    page.locator(f"#gate-{g1.id}").wait_for(state="detached", timeout=10_000)
    g1.refresh_from_db()
    assert g1.status == GateStatus.APPROVED and g1.approvals.get().actor == "user:adam"
    # r: the comment gets the focus; Ctrl+Enter sends the reject
    page.keyboard.press("j")
    assert focused.get_attribute("data-gate") == str(g2.id)
    page.keyboard.press("r")
    comment = page.locator(f"#comment-{g2.id}")
    assert comment.evaluate("el => el === document.activeElement")
    page.keyboard.type("duplicate payment")
    page.keyboard.press("Control+Enter")
    page.locator(f"#gate-{g2.id}").wait_for(state="detached", timeout=10_000)
    g2.refresh_from_db()
    assert g2.status == GateStatus.REJECTED
    assert g2.approvals.get().comment == "duplicate payment"


def test_filters_survive_polling_and_countdowns_tick(live_server, page_of, people):  # noqa: F811
    page = page_of()
    sign_in(page, live_server.url, "adam")
    page.goto(f"{live_server.url}/console/?workflow=pt004_execution_spine&sort=age")
    assert page.locator("#id_workflow").input_value() == "pt004_execution_spine"
    run = paused_run(people)
    gate = Gate.objects.get(run=run)
    card = page.locator(f"#gate-{gate.id}")
    card.wait_for(timeout=10_000)  # appeared through polling, filters kept
    assert page.url.endswith("/console/?workflow=pt004_execution_spine&sort=age")
    countdown = card.locator("time[data-countdown]")
    first = countdown.inner_text()
    page.wait_for_timeout(1500)
    assert countdown.inner_text() != first and countdown.inner_text().startswith("in 23h")
    Gate.objects.filter(pk=gate.pk).update(approver_group="finance")  # no longer adam's
    card.wait_for(state="detached", timeout=10_000)
    assert page.title().startswith("Approval queue")


def test_audit_trail_shows_a_verified_chain(live_server, page_of, people):  # noqa: F811
    run = paused_run(people)
    page = page_of()
    sign_in(page, live_server.url, "olivia")
    page.goto(f"{live_server.url}/console/audit/")
    page.get_by_label("Run id").fill(str(run.run_id))
    page.get_by_role("button", name="Filter").click()
    page.locator("#chain-status .badge-ok").wait_for(timeout=10_000)
    assert f"run={run.run_id}" in page.url  # pushed: bookmarkable
    assert "verifies" in page.locator("#chain-status").inner_text()
    assert page.locator(".event-card").count() >= 5
    page.screenshot(path=str(SHOTS / "audit.png"), full_page=False)
    page.go_back()
    page.wait_for_url(f"{live_server.url}/console/audit/")
    page.locator("#audit-results").wait_for()
    assert page.locator("nav.nav").count() == 1  # Back: a whole page, never a fragment
    assert page.locator("#chain-status").count() == 0
