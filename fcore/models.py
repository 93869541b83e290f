"""Tenancy and machine clients.

A `Tenant` owns every governed object. People belong to tenants through `Membership`
(their groups are Django groups: approvers, operators, policy-admins). Machines act through
an `ApiClient`, whose secret is derived from a server-side key and never stored (see
`fcore.clients`).
"""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

FOUR_EYES_ACTOR = "actor"
FOUR_EYES_ACTOR_AND_KEY = "actor_and_key"
FOUR_EYES_MODES = (FOUR_EYES_ACTOR, FOUR_EYES_ACTOR_AND_KEY)


class Tenant(models.Model):
    """A customer organisation; every governed row carries one."""

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    settings = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    def clean(self):
        mode = (self.settings or {}).get("four_eyes", FOUR_EYES_ACTOR)
        if mode not in FOUR_EYES_MODES:
            raise ValidationError({"settings": f"four_eyes must be one of "
                                               f"{', '.join(FOUR_EYES_MODES)}"})

    @property
    def four_eyes(self) -> str:
        """`settings["four_eyes"]`: "actor" (the default: the run's creator and the gate's
        requester never vote) or "actor_and_key" (nor does the API key they acted through).
        An unknown value reads as the stricter one."""
        mode = (self.settings or {}).get("four_eyes", FOUR_EYES_ACTOR)
        return mode if mode in FOUR_EYES_MODES else FOUR_EYES_ACTOR_AND_KEY


class Membership(models.Model):
    """A person's membership of a tenant, with their groups in that tenant (approvers, …)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    groups = models.ManyToManyField("auth.Group", blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "user"], name="uniq_membership"),
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant}"


class ApiClient(models.Model):
    """A machine client. Its secret is HMAC(server key, salt): the row alone cannot give it."""

    SCOPES = ("runs:read", "runs:write", "gates:request", "gates:resolve", "audit:read",
              "tasks:claim")

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_clients")
    name = models.CharField(max_length=200)
    kid = models.CharField(max_length=64, unique=True)
    secret_salt = models.CharField(max_length=64)
    scopes = models.CharField(max_length=200)
    allowed_subs = models.JSONField(
        default=list, blank=True,
        help_text='The subs its tokens may name, as a JSON list (e.g. ["executor"]); '
                  "empty: any valid sub.")
    active = models.BooleanField(default=True)
    created_by = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["tenant", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kid})"

    @property
    def scope_set(self) -> set[str]:
        return set(self.scopes.split())


class Heartbeat(models.Model):
    """The last tick of a periodic process (`fcore.heartbeats`): one row per name, updated in
    place. `beat` is written by a task that beat schedules and a worker runs, so its age
    says whether beat, the broker and a worker still work together (`/readyz`)."""

    name = models.CharField(max_length=32, unique=True)
    at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name}@{self.at.isoformat()}"
