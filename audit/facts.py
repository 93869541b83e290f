"""Checks of facts kept outside the audit chain, run by `audit_verify`.

`audit` imports no other app, but the rows an event records (runs, steps, decisions,
gates, votes) belong to the apps above it. Each such app registers a check here when it
starts (`runs` registers `runs.bindings.run_facts_verify`); `audit_verify` runs them after
the chains. A check takes `tenant_ids` (None: every tenant) and `stream` (None: every
stream) and returns failures `{stream, seq, problem}` like the chain walk's (`seq` is the
event named, or None when the fault is a row no event records).
"""

_checks = []


def facts_check_register(check) -> None:
    if check not in _checks:
        _checks.append(check)


def facts_verify(*, tenant_ids=None, stream=None) -> list[dict]:
    return [failure for check in _checks
            for failure in check(tenant_ids=tenant_ids, stream=stream)]
