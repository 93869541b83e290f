"""Policies (with immutable versions), the decisions they produced, and approval gates.

A `Policy` row is the editable head; each save goes through `gates.policies.policy_save`,
which writes a new immutable `PolicyVersion` and an `FC-ADM-001` event. Decisions name the
version they used. A `Gate` is a state machine (`open → approved | rejected | expired |
overridden | cancelled`); votes are `Approval` rows, one per actor.

Notifications about gates (`gates.notify`) use an outbox written in the transaction of the
gate change: `WebhookDelivery` rows for webhooks (which double as the delivery log) and
`EmailNotification` rows for email. `GateLinkUse` makes one-click email links single-use.
"""

from django.conf import settings
from django.db import models
from django_fsm import FSMField, FSMModelMixin, transition


class Effect(models.TextChoices):
    ALLOW = "allow"
    FLAG = "flag"
    DENY = "deny"


class TenantQuerySet(models.QuerySet):
    def for_tenant(self, tenant):
        return self.filter(tenant=tenant)


class Policy(models.Model):
    """The current state of a policy; its history is in `versions`."""

    tenant = models.ForeignKey("fcore.Tenant", on_delete=models.PROTECT, related_name="+")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    tier = models.PositiveSmallIntegerField(default=1)
    applies_to = models.JSONField(default=dict, blank=True)
    rules = models.JSONField(default=list)
    enabled = models.BooleanField(default=True)
    version = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["tenant", "-tier", "name"]
        verbose_name_plural = "policies"
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="uniq_policy")]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class PolicyVersion(models.Model):
    """One immutable version of a policy."""

    policy = models.ForeignKey(Policy, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField()
    tier = models.PositiveSmallIntegerField()
    applies_to = models.JSONField(default=dict)
    rules = models.JSONField(default=list)
    enabled = models.BooleanField()
    spec_hash = models.CharField(max_length=64)
    created_by = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["policy", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["policy", "version"], name="uniq_policy_version"),
        ]

    def __str__(self) -> str:
        return f"{self.policy.name} v{self.version}"


class PolicyDecision(models.Model):
    """The decision taken before one attempt of one step, with what it was based on."""

    tenant = models.ForeignKey("fcore.Tenant", on_delete=models.PROTECT, related_name="+")
    step_run = models.ForeignKey("runs.StepRun", on_delete=models.PROTECT,
                                 related_name="decisions")
    attempt = models.PositiveIntegerField(default=1)
    decision = models.CharField(max_length=8, choices=Effect.choices)
    reason = models.CharField(max_length=1000, blank=True)
    policy = models.ForeignKey(Policy, null=True, blank=True, on_delete=models.PROTECT,
                               related_name="+")
    policy_version = models.PositiveIntegerField(null=True, blank=True)
    tier = models.PositiveSmallIntegerField(null=True, blank=True)
    rules_triggered = models.JSONField(default=list)
    policies = models.JSONField(default=list)
    context = models.JSONField(default=dict)
    evaluated_at = models.DateTimeField()
    evaluation_us = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["evaluated_at", "id"]

    def __str__(self) -> str:
        return f"{self.step_run} {self.decision}"


class GateStatus(models.TextChoices):
    OPEN = "open"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    OVERRIDDEN = "overridden"
    CANCELLED = "cancelled"


# The Django permissions of Gate.Meta as `user.has_perm` names them (API and console).
OVERRIDE_PERMISSION = "gates.override_gate"
REVIEW_PERMISSION = "gates.review_override"


class Gate(FSMModelMixin, models.Model):
    """An approval gate on a run (and usually one of its steps)."""

    tenant = models.ForeignKey("fcore.Tenant", on_delete=models.PROTECT, related_name="+")
    run = models.ForeignKey("runs.Run", on_delete=models.PROTECT, related_name="gates")
    step_run = models.ForeignKey("runs.StepRun", null=True, blank=True,
                                 on_delete=models.PROTECT, related_name="gates")
    status = FSMField(default=GateStatus.OPEN, choices=GateStatus.choices, protected=True,
                      db_index=True)
    source = models.CharField(max_length=16)  # policy | approval_step | api
    reason = models.CharField(max_length=1000)
    requested_by = models.CharField(max_length=200)
    requested_by_key = models.CharField(max_length=64, blank=True, default="")  # API key id
    required_approvals = models.PositiveSmallIntegerField(default=1)
    approver_group = models.CharField(max_length=150, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    expires_in = models.PositiveIntegerField(null=True, blank=True)  # seconds; null: never
    on_timeout = models.CharField(max_length=16, default="reject")
    escalate_to = models.CharField(max_length=150, blank=True)
    input_schema = models.JSONField(null=True, blank=True)
    resolution = models.JSONField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    # Set by a break-glass override: the console shows it until someone else reviews it
    # (`gates.services.gate_override_review`), who leaves their name, the time and a note.
    needs_review = models.BooleanField(default=False)
    reviewed_by = models.CharField(max_length=200, blank=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["tenant", "status", "-created_at"])]
        permissions = [
            ("override_gate", "Can force-resolve an open gate (break-glass)"),
            ("review_override", "Can mark a break-glass override as reviewed"),
        ]

    def __str__(self) -> str:
        return f"gate {self.pk} ({self.status})"

    @property
    def step_id(self) -> str | None:
        return self.step_run.step_id if self.step_run_id else None

    @transition(field=status, source=GateStatus.OPEN, target=GateStatus.APPROVED)
    def approve(self):
        pass

    @transition(field=status, source=GateStatus.OPEN, target=GateStatus.REJECTED)
    def reject(self):
        pass

    @transition(field=status, source=GateStatus.OPEN, target=GateStatus.EXPIRED)
    def expire(self):
        pass

    @transition(field=status, source=GateStatus.OPEN, target=GateStatus.OVERRIDDEN)
    def override(self):
        pass

    @transition(field=status, source=GateStatus.OPEN, target=GateStatus.CANCELLED)
    def cancel(self):
        pass


class Vote(models.TextChoices):
    APPROVE = "approve"
    REJECT = "reject"


class Approval(models.Model):
    """One actor's vote on a gate."""

    gate = models.ForeignKey(Gate, on_delete=models.PROTECT, related_name="approvals")
    actor = models.CharField(max_length=200)
    decision = models.CharField(max_length=8, choices=Vote.choices)
    comment = models.TextField(blank=True)
    input = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["gate", "actor"], name="uniq_vote_per_actor"),
        ]

    def __str__(self) -> str:
        return f"{self.actor} {self.decision}"


# --- notifications -------------------------------------------------------------------------

NOTIFY_EVENTS = ("gate.opened", "gate.escalated", "gate.resolved")
# What an endpoint created without a list of events takes: the gate events. Run events are
# asked for by name (every run ends: a receiver of approvals is not flooded with them).
DEFAULT_EVENTS = NOTIFY_EVENTS
# A run's end, written in the transaction of its seal (`gates.notify.run_notify`).
RUN_EVENTS = ("run.completed", "run.failed", "run.cancelled")
# An external step waiting for an executor (`gates.notify`), also asked for by name.
STEP_EVENTS = ("step.ready",)
NOTIFY_EVENTS = (*NOTIFY_EVENTS, *RUN_EVENTS, *STEP_EVENTS)


def _all_events() -> list[str]:
    """The default of `WebhookEndpoint.events` (named so by migrations)."""
    return list(DEFAULT_EVENTS)


class WebhookEndpoint(models.Model):
    """A tenant's receiver of signed notifications (`NOTIFY_EVENTS`: gates, runs' ends).

    The secret signs every delivery (`webhook-signature`, Standard Webhooks, and the
    deprecated `X-FC-Signature`); it is shown once when the endpoint
    is created and never displayed again. It is stored only encrypted under a key from
    settings (`fcore.secret_box`; `gates.webhook_endpoints.webhook_endpoint_secret`).
    """

    tenant = models.ForeignKey("fcore.Tenant", on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=200)
    url = models.URLField(max_length=500)
    secret_encrypted = models.TextField(editable=False)
    events = models.JSONField(default=_all_events)
    active = models.BooleanField(default=True)
    created_by = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["tenant", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.url})"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    SENDING = "sending"
    DELIVERED = "delivered"
    FAILED = "failed"


class WebhookDelivery(models.Model):
    """One notification to one endpoint, and the log of every attempt to deliver it.

    Written in the transaction of the gate change (an outbox); a Celery task claims it,
    POSTs it and records the attempt. `next_attempt_at` is when it may be tried next (while
    `sending`, the end of the claim).
    """

    delivery_id = models.UUIDField(unique=True)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE,
                                 related_name="deliveries")
    gate = models.ForeignKey(Gate, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="+")
    event = models.CharField(max_length=32)
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices,
                              default=DeliveryStatus.PENDING, db_index=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=1000, blank=True)
    attempt_log = models.JSONField(default=list, blank=True)
    next_attempt_at = models.DateTimeField(db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.event} → {self.endpoint.name} ({self.status})"


class EmailNotification(models.Model):
    """One gate email to one person; sent once by a Celery task (the outbox row)."""

    tenant = models.ForeignKey("fcore.Tenant", on_delete=models.CASCADE, related_name="+")
    gate = models.ForeignKey(Gate, on_delete=models.CASCADE, related_name="+")
    event = models.CharField(max_length=32)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="+")
    email = models.EmailField()
    with_link = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices,
                              default=DeliveryStatus.PENDING, db_index=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=1000, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["gate", "event", "user"], name="uniq_gate_email"),
        ]

    def __str__(self) -> str:
        return f"{self.event} → {self.email} ({self.status})"


class GateLinkUse(models.Model):
    """A one-click gate link that has been used to decide: its nonce can never decide again."""

    nonce = models.CharField(max_length=64, unique=True)
    gate = models.ForeignKey(Gate, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="+")
    used_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-used_at"]

    def __str__(self) -> str:
        return f"link {self.nonce} used by {self.user_id}"
