"""Fixtures of the audit tests: a completed run with a gate, votes and odd JSON values."""

import pytest


@pytest.fixture
def completed_run(api, approver):
    run_id = api.post("/workflows/runs", {
        "workflow": "pt004_execution_spine",
        "input": {"amount": 25000, "note": "naïve ☃ 𝄞", "ratio": 1.5},
        "metadata": {"ticket": "AUD-7"}}).json()["run_id"]
    api.patch(f"/workflows/runs/{run_id}/steps/step_1", {"status": "succeeded"})
    gate_id = api.get(f"/workflows/runs/{run_id}/gates").json()[0]["gate_id"]
    approver.patch(f"/workflows/runs/{run_id}/gates/{gate_id}",
                   {"decision": "approve", "comment": "checked the invoice ✓"})
    for i in range(2, 6):
        api.patch(f"/workflows/runs/{run_id}/steps/step_{i}",
                  {"status": "succeeded",
                   "output": {"n": i, "big": 2**53 - 1, "f": 0.1, "g": 1e21}})
    assert api.get(f"/workflows/runs/{run_id}").json()["status"] == "completed"
    return run_id
