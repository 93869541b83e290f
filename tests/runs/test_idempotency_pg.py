"""Creates racing with one idempotency key on PostgreSQL (a connection per thread): the
unique (tenant, key) constraint lets exactly one insert win; every other create answers
that run, and a different request under the key is a 409."""

import pytest
from django.db import connection

from fcore.errors import Conflict
from fcore.models import Tenant
from runs.models import Run
from runs.services import run_create
from tests.concurrency import concurrently
from tests.conftest import load_bundle

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("audit_streams_verify")]


def test_creates_racing_with_one_key_make_one_run():
    if connection.vendor != "postgresql":
        pytest.fail("concurrency tests need PostgreSQL (run them with DATABASE_URL=postgres://…)")
    load_bundle("docs/examples/pt004.yaml")
    tenant = Tenant.objects.get(slug="tenant_omega")

    def create(i):
        input = {"amount": 500} if i < 7 else {"amount": 501}  # the last one differs
        try:
            run, created = run_create(tenant=tenant, workflow="pt004_execution_spine",
                                      input=input, actor="client:racer",
                                      idempotency_key="race-1")
        except Conflict as exc:
            return ("conflict", exc.code)
        return (str(run.run_id), created)

    answers = concurrently(8, create)
    runs = list(Run.objects.filter(idempotency_key="race-1"))
    assert len(runs) == 1
    winner = str(runs[0].run_id)
    made = [a for a in answers if a[1] is True]
    assert len(made) == 1 and made[0][0] == winner
    same, different = answers[:7], answers[7]
    if runs[0].input == {"amount": 500}:  # a same-request create won: the others replay it
        assert all(a in ((winner, True), (winner, False)) for a in same)
        assert different == ("conflict", "idempotency_conflict")
    else:  # the different one won: every other create is a conflict
        assert same == [("conflict", "idempotency_conflict")] * 7
