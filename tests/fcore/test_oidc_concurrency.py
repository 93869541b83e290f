"""Simultaneous first sign-ins of one person with the provider (real transactions on
PostgreSQL): every one of them signs in, as the same person, with one membership and one
`FC-ADM-005` created event."""

import json

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from fcore.models import Membership
from tests.concurrency import concurrently

from .test_oidc import GROUP_MAP, adm_events, oidc, sign_in  # noqa: F401  (fixture)

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _needs_postgres():
    if connection.vendor != "postgresql":
        pytest.fail("concurrency tests need PostgreSQL (run them with DATABASE_URL=postgres://…)")


def test_simultaneous_first_sign_ins_make_one_person_and_one_membership(oidc, pt004):  # noqa: F811
    assert json.loads(oidc.FCORE_OIDC_GROUP_MAP) == GROUP_MAP
    claims = {"sub": "u-race", "groups": ["omega-ops"]}
    users = concurrently(6, lambda i: sign_in(claims).pk)
    assert len(set(users)) == 1
    assert get_user_model().objects.filter(username="oidc:idp.example.org:u-race").count() == 1
    membership = Membership.objects.get(user_id=users[0], tenant=pt004)
    assert sorted(g.name for g in membership.groups.all()) == ["approvers", "operators"]
    assert [e.data["action"] for e in adm_events(pt004)] == ["created"]
