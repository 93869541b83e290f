"""Actors: who did something. Stored everywhere as one string `<kind>:<id>`.

Kinds: `user` (a person signed in to the console), `client` (a machine acting through an
API token; the id is the token's `sub`), `system` (the engine, the scheduler).
"""

from dataclasses import dataclass

ENGINE = "system:engine"
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


def client_actor(sub: str) -> str:
    return f"client:{sub}"
