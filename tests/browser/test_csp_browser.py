"""The strict Content Security Policy in a real browser (Playwright + Chromium): a superuser
who is also a tenant member goes through the console and Django admin, and Chromium reports
no CSP violation on any page. Pages and exceptions: fcore/interfaces/csp.py."""

import pytest
from django.contrib.auth import get_user_model

from fcore.members import member_set
from gates.models import Policy
from gates.policies import policy_save

from .test_console_browser import (  # noqa: F401  (fixtures)
    PASSWORD,
    browser,
    paused_run,
    people,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Chromium also logs each violation to the console; the event says which directive and where.
REPORT_VIOLATIONS = """document.addEventListener("securitypolicyviolation", e => console.warn(
  "CSP violation: " + e.violatedDirective + " at " + e.sourceFile + ":" + e.lineNumber));"""


def test_console_and_admin_pages_report_no_csp_violation(live_server, browser,  # noqa: F811
                                                         people):  # noqa: F811
    member_set(tenant=people, username="sam", groups=["approvers", "operators"],
               password=PASSWORD)
    get_user_model().objects.filter(username="sam").update(is_superuser=True, is_staff=True)
    run = paused_run(people)
    policy = Policy.objects.filter(tenant=people).first()
    policy_save(tenant=people, name=policy.name, rules=policy.rules, tier=policy.tier,
                applies_to=policy.applies_to, enabled=not policy.enabled,
                actor="user:sam")  # a second version: the versions page shows a diff
    page = browser.new_page()
    page.add_init_script(REPORT_VIOLATIONS)
    violations = []
    page.on("console", lambda msg: violations.append(f"{page.url}: {msg.text}")
            if "Content Security Policy" in msg.text or "CSP violation" in msg.text else None)
    base = live_server.url

    page.goto(f"{base}/admin/login/?next=/admin/")
    page.get_by_label("Username").fill("sam")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/admin/")
    page.goto(f"{base}/admin/gates/gate/")
    assert page.locator("#result_list tbody tr").count() == 1
    page.goto(f"{base}/admin/gates/policy/{policy.pk}/versions/")
    changes = page.locator("#compare p.changes")  # was a style attribute; now admin.css
    assert changes.evaluate("el => getComputedStyle(el).paddingLeft") == "10px"
    assert page.locator("table.diff").count() == 1

    page.goto(f"{base}/console/")
    page.locator(".gate-card").first.wait_for()
    page.goto(f"{base}/console/runs/{run.run_id}/")
    page.locator("#run-status").wait_for()
    page.goto(f"{base}/console/audit/")
    page.locator("#audit-results").wait_for()
    page.wait_for_load_state("networkidle")
    assert violations == []
