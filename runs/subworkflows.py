"""The references between workflows that `type: workflow` steps make (DESIGN §11), checked
when a bundle is loaded: every child workflow exists (in the bundle or already published
for the tenant, at the pinned `version` when one is given), and no workflow reaches itself
through its sub-workflows (A → B → A, across the bundle and what is published). A fault
raises `SubworkflowError` with the key of the step's `workflow` in the bundle.

Which version a reference means: without `version`, the bundle's own definition of that
workflow when it has one (it becomes the newest), else the newest published; with
`version`, that published version, or the bundle's when loading the bundle makes that
version (its steps are new, and the version is the next one, or unchanged and it is the
newest).
"""

from audit.hashing import json_hash

from .definitions import steps_validate
from .models import WorkflowDefinition

WORKFLOW_STEP = "workflow"


class SubworkflowError(ValueError):
    """An unknown child workflow or a cycle of sub-workflows; `key` is where in the bundle."""

    def __init__(self, message: str, *, key: tuple):
        self.key = key
        super().__init__(message)


def _references(steps: list) -> list[tuple[int, str, str, int | None]]:
    """(position, step id, workflow, version) of each workflow step."""
    return [(j, s["id"], s["workflow"], s.get("version")) for j, s in enumerate(steps)
            if isinstance(s, dict) and s.get("type") == WORKFLOW_STEP]


class _Graph:
    """The workflows of a bundle and those published for its tenant, by (name, version)."""

    def __init__(self, tenant_slug: str, workflows: list[dict]):
        self.published: dict[str, dict[int, tuple[list, str]]] = {}
        for name, version, steps, spec_hash in (
                WorkflowDefinition.objects.filter(tenant__slug=tenant_slug)
                .values_list("name", "version", "steps", "spec_hash")):
            self.published.setdefault(name, {})[version] = (steps, spec_hash)
        self.bundle: dict[str, tuple[int, list, int]] = {}
        for i, wf in enumerate(workflows):
            steps = steps_validate(wf["steps"])
            spec = {"steps": steps, **({"output": wf["output"]}
                                       if wf.get("output") is not None else {})}
            self.bundle[wf["name"]] = (i, steps, self._version_made(wf["name"], spec))

    def _version_made(self, name: str, spec: dict) -> int:
        """The version loading the bundle gives `name`: its newest when unchanged."""
        versions = self.published.get(name)
        if not versions:
            return 1
        newest = max(versions)
        return newest if versions[newest][1] == json_hash(spec) else newest + 1

    def node(self, name: str, version: int | None) -> tuple | None:
        """((name, version), steps) of a reference, or None when it is unknown."""
        if name in self.bundle and (version is None or version == self.bundle[name][2]):
            return (name, self.bundle[name][2]), self.bundle[name][1]
        versions = self.published.get(name, {})
        if version is None and versions:
            version = max(versions)
        if version in versions:
            return (name, version), versions[version][0]
        return None


def bundle_subworkflows_check(tenant_slug: str, workflows: list[dict]) -> None:
    """Refuse a bundle whose workflow steps name an unknown workflow (or version), or
    whose workflows reach themselves through their sub-workflows. `workflows`: the
    bundle's entries, each already valid on its own."""
    graph = _Graph(tenant_slug, workflows)
    for name, (i, steps, _version) in graph.bundle.items():
        for j, step_id, child, version in _references(steps):
            key = ("workflows", i, "steps", j, "workflow")
            if graph.node(child, version) is None:
                pinned = f" version {version}" if version is not None else ""
                raise SubworkflowError(
                    f"workflow {name}: step '{step_id}': workflow: unknown workflow "
                    f"{child!r}{pinned} (neither in the bundle nor published)", key=key)
    for name, (i, steps, version) in graph.bundle.items():
        cycle = _cycle_from(graph, (name, version), steps)
        if cycle is not None:
            j, step_id, path = cycle
            raise SubworkflowError(
                f"workflow {name}: step '{step_id}': workflow: a cycle of sub-workflows: "
                f"{' -> '.join(path)}", key=("workflows", i, "steps", j, "workflow"))


def _cycle_from(graph: _Graph, start: tuple, steps: list) -> tuple | None:
    """(position, step id, names along the cycle) of the first workflow step of `start`
    through which `start` reaches itself; None when it does not."""
    for j, step_id, child, version in _references(steps):
        found = graph.node(child, version)
        path = _path_back(graph, found, start, seen=set()) if found else None
        if path is not None:
            return j, step_id, [start[0], *path]
    return None


def _path_back(graph: _Graph, node: tuple, start: tuple, *, seen: set) -> list | None:
    """The names from `node` back to `start` through sub-workflows, or None."""
    (key, steps) = node
    if key == start:
        return [key[0]]
    if key in seen:
        return None
    seen.add(key)
    for _j, _step_id, child, version in _references(steps):
        found = graph.node(child, version)
        if found is None:
            continue
        path = _path_back(graph, found, start, seen=seen)
        if path is not None:
            return [key[0], *path]
    return None
