"""Actors: who did something. Stored everywhere as one string `<kind>:<id>`.

Kinds: `user` (a person signed in to the console; the id is their username, which for a
person from the OIDC provider is `oidc:<issuer host>:<sub>`, see `fcore.oidc`), `client` (a
machine acting through an API token; the id is the token's `sub`), `system` (the engine,
the scheduler, `system:oidc` applying a provider's groups claim).
"""

import re
from dataclasses import dataclass

ENGINE = "system:engine"
CLIENT_PREFIX = "client:"
ACTOR_MAX_LENGTH = 200  # the actor columns (created_by, requested_by, Approval.actor, …)
SUB_MAX_LENGTH = ACTOR_MAX_LENGTH - len(CLIENT_PREFIX)
# Starts with a letter or digit: no surrounding space, no control character, nothing that
# could pass for another actor when compared or displayed.
SUB_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/-]*")
SCHEDULER = "system:scheduler"


@dataclass(frozen=True)
class Actor:
    kind: str
    id: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"

    @classmethod
    def parse(cls, value: str) -> "Actor":
        kind, _, ident = value.partition(":")
        return cls(kind=kind, id=ident)

    def as_context(self) -> dict:
        return {"id": self.id, "kind": self.kind}


def user_actor(user) -> str:
    return f"user:{user.get_username()}"


def sub_problem(sub) -> str | None:
    """Why `sub` cannot name a machine actor, or None when it can."""
    if not isinstance(sub, str) or not sub:
        return "it is empty"
    if len(sub) > SUB_MAX_LENGTH:
        return f"it is longer than {SUB_MAX_LENGTH} characters"
    if not SUB_PATTERN.fullmatch(sub):
        return ("it must start with a letter or digit and contain only letters, digits "
                "and . _ : @ / -")
    return None


def client_actor(sub: str) -> str:
    return f"{CLIENT_PREFIX}{sub}"
