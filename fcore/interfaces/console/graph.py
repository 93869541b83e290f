"""Pictures of a run, drawn on the server as inline SVG (no script, no library, no CDN).

`step_graph_svg`: the step graph from each step's `after` list, laid out in layers by
topological depth (a step sits one column right of its deepest dependency), every node
coloured by its status through CSS classes (`status-<status>` in console.css). A step
skipped by its `when` says so; a map step shows how many of its instances succeeded, and
its instances (`<id>[i]`, under it in its column) are drawn only when there are at most
`MAP_SHOWN` of them — beyond, the map step's node counts them by status. A workflow step
whose child run exists is a link to that run's page (`links`: step id → URL).
`timeline_svg`: one bar per started step, from its start to its end (or now), on the run's
time axis, with its duration (a map's many instances collapsed as in the graph). Every
text is escaped; the result is safe to inline.
"""

from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

NODE_W, NODE_H, COL_GAP, ROW_GAP, PAD = 150, 38, 56, 18, 12
LABEL_CHARS = 18
MAP_SHOWN = 4


def _label(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else text[:LABEL_CHARS - 1] + "…"


def step_depths(steps) -> dict[str, int]:
    """Topological depth of every step (0 for a root); unknown or cyclic deps count 0."""
    after = {s.step_id: [a for a in (s.after or [])] for s in steps}
    depth: dict[str, int] = {}

    def visit(step_id: str, trail: frozenset) -> int:
        if step_id in depth:
            return depth[step_id]
        deps = [a for a in after.get(step_id, []) if a in after and a not in trail]
        value = 1 + max((visit(a, trail | {step_id}) for a in deps), default=-1)
        depth[step_id] = value
        return value

    for step_id in after:
        visit(step_id, frozenset())
    return depth


def map_instances(steps) -> dict[str, list]:
    """The instances of every map step, by its step id, in item order."""
    found: dict[str, list] = {}
    for step in steps:
        parent = getattr(step, "map_parent", "")
        if parent:
            found.setdefault(parent, []).append(step)
    return found


def _node_text(step, instances: dict[str, list]) -> tuple[str, str, str]:
    """(label, status line, tooltip) of a node."""
    status, label = step.status, _label(step.step_id)
    title = f"{step.step_id} ({step.step_type}): {status}"
    error = getattr(step, "error", None) or {}
    if status == "skipped" and error.get("detail") == "condition false":
        return label, "skipped · when false", title + " (condition false)"
    mapped = instances.get(step.step_id)
    if mapped is None:
        return label, status, title
    counts: dict[str, int] = {}
    for instance in mapped:
        counts[instance.status] = counts.get(instance.status, 0) + 1
    done = counts.get("succeeded", 0)
    shown = ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))
    if len(mapped) > MAP_SHOWN:
        label = _label(f"{step.step_id[:LABEL_CHARS - 6]} ×{len(mapped)}")
    return (label, f"{status} · {done}/{len(mapped)}",
            f"{title}; map of {len(mapped)}: {shown}")


def step_graph_svg(steps, links: dict[str, str] | None = None) -> SafeString:
    """The step graph as an `<svg>`; nodes are `<g class="node status-…">`, inside an
    `<a href>` for the steps in `links` (a workflow step's child run)."""
    links = links or {}
    steps = list(steps)
    if not steps:
        return mark_safe("")
    instances = map_instances(steps)
    steps = _collapsed(steps)
    depths = step_depths(steps)
    columns: dict[int, list] = {}
    for step in steps:  # keeps definition order inside a column
        columns.setdefault(depths[step.step_id], []).append(step)
    pos = {}
    for col, members in columns.items():
        for row, step in enumerate(members):
            pos[step.step_id] = (PAD + col * (NODE_W + COL_GAP),
                                 PAD + row * (NODE_H + ROW_GAP))
    width = PAD * 2 + len(columns) * NODE_W + (len(columns) - 1) * COL_GAP
    height = PAD * 2 + max(len(m) for m in columns.values()) * (NODE_H + ROW_GAP) - ROW_GAP
    parts = [
        f'<svg class="step-graph" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="graph-title"><title id="graph-title">Step graph: '
        f'{len(steps)} steps in {len(columns)} layers</title>',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'class="arrow-head"/></marker></defs>',
    ]
    for step in steps:
        x2, y2 = pos[step.step_id]
        if getattr(step, "map_parent", ""):
            continue  # an instance sits under its map step, whose edges it shares
        for dep in step.after or []:
            if dep not in pos:
                continue
            x1, y1 = pos[dep]
            sx, sy, tx, ty = x1 + NODE_W, y1 + NODE_H / 2, x2, y2 + NODE_H / 2
            mid = (sx + tx) / 2
            parts.append(f'<path class="edge" data-from="{escape(dep)}" '
                         f'data-to="{escape(step.step_id)}" d="M{sx},{sy} C{mid},{sy} '
                         f'{mid},{ty} {tx},{ty}" marker-end="url(#arrow)"/>')
    for step in steps:
        x, y = pos[step.step_id]
        status = escape(step.status)
        label, line, title = _node_text(step, instances)
        kind = " map" if step.step_id in instances else (
            " instance" if getattr(step, "map_parent", "") else "")
        link = links.get(step.step_id)
        if link:
            kind += " child-link"
            title += " — open its child run"
        node = (
            f'<g class="node status-{status}{kind}" data-step="{escape(step.step_id)}">'
            f'<title>{escape(title)}</title>'
            f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="7"/>'
            f'<text x="{x + 10}" y="{y + 16}" class="node-id">{escape(label)}'
            f'</text><text x="{x + 10}" y="{y + 31}" class="node-status">{escape(line)}'
            '</text></g>')
        parts.append(f'<a href="{escape(link)}">{node}</a>' if link else node)
    parts.append("</svg>")
    return mark_safe("".join(parts))


def duration_text(seconds: float | None) -> str:
    """'850 ms', '12.5 s', '3 min 05 s', '2 h 04 min'."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def step_duration(step, now=None) -> float | None:
    if not step.started_at:
        return None
    end = step.ended_at or now or timezone.now()
    return max((end - step.started_at).total_seconds(), 0.0)


TL_LABEL, TL_BAR, TL_ROW, TL_TEXT = 150, 480, 24, 110


def _collapsed(steps) -> list:
    """The steps without the instances of maps that have more than `MAP_SHOWN`."""
    instances = map_instances(steps)
    return [s for s in steps
            if len(instances.get(getattr(s, "map_parent", ""), ())) <= MAP_SHOWN]


def timeline_svg(steps, now=None) -> SafeString:
    """One bar per started step on a shared time axis, with its duration (a map's bar
    covers its instances; theirs are drawn only when there are few)."""
    now = now or timezone.now()
    started = [s for s in _collapsed(list(steps)) if s.started_at]
    if not started:
        return mark_safe("")
    t0 = min(s.started_at for s in started)
    t1 = max((s.ended_at or now) for s in started)
    span = max((t1 - t0).total_seconds(), 0.001)
    width, height = TL_LABEL + TL_BAR + TL_TEXT, len(started) * TL_ROW + 8
    parts = [f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-labelledby="timeline-title"><title id="timeline-title">Step timeline, '
             f'{duration_text(span)} from the first start</title>']
    for i, step in enumerate(started):
        y = 4 + i * TL_ROW
        x = TL_LABEL + (step.started_at - t0).total_seconds() / span * TL_BAR
        w = max(step_duration(step, now) / span * TL_BAR, 2)
        status = escape(step.status)
        parts.append(
            f'<g class="bar status-{status}"><text x="0" y="{y + 14}" class="bar-label">'
            f'{escape(_label(step.step_id))}</text><rect x="{x:.1f}" y="{y + 3}" '
            f'width="{w:.1f}" height="{TL_ROW - 8}" rx="3"/><text x="{TL_LABEL + TL_BAR + 8}" '
            f'y="{y + 14}" class="bar-time">{duration_text(step_duration(step, now))}</text>'
            f'</g>')
    parts.append("</svg>")
    return mark_safe("".join(parts))
