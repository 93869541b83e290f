"""A picture of the Grafana dashboard (docs/grafana/federation-core.json) from a real run.

No Grafana runs on the project's machines. This script serves FC (embedded: SQLite and the
file-system broker, `manage.py serve`: gunicorn, a Celery worker, beat) in a scratch
FCORE_VAR_DIR, drives it for --seconds with the PT-004 proof (`manage.py proof`, in a loop)
and a few other requests, scrapes `/metrics` every --every seconds, then evaluates each
panel's PromQL expression over the scraped samples (the forms the dashboard uses: `rate`,
`sum by`, `max`, `histogram_quantile`, label matchers), draws the panels as SVG in one HTML
page and screenshots it with Chromium (Playwright, /usr/bin/chromium):

    .venv/bin/python bench/dashboard_snapshot.py --seconds 150 \
        --out docs/grafana/federation-core.png

The evaluator is this script's own small one: it reads the dashboard's expressions, and
an expression it does not understand stops it (so the picture never shows a panel that is
not the dashboard's).
"""

import argparse
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from html import escape
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "docs" / "grafana" / "federation-core.json"
COLOURS = ["#73bf69", "#f2cc0c", "#5794f2", "#ff780a", "#f2495c", "#b877d9", "#8ab8ff",
           "#fade2a", "#96d98d", "#ffa6b0", "#c0d8ff", "#ffb357"]


# ---- the run ---------------------------------------------------------------------------

def manage(env, *args, capture=False):
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True,
                          capture_output=capture, text=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, timeout: float = 15) -> tuple[int, bytes]:
    """(status, body); (0, b"") when no answer came (a loaded machine)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except (OSError, TimeoutError):
        return 0, b""


def run_fc(seconds: float, every: float) -> list[tuple[float, dict]]:
    var = Path(tempfile.mkdtemp(prefix="fc-dashboard-"))
    env = {**os.environ, "FCORE_VAR_DIR": str(var), "FCORE_HEARTBEAT_INTERVAL_S": "5",
           "FCORE_CHECKPOINT_INTERVAL_S": "10"}
    env.pop("DATABASE_URL", None), env.pop("CELERY_BROKER_URL", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    manage(env, "migrate", "--noinput", capture=True)
    manage(env, "demo_seed", capture=True)
    client = json.loads(manage(env, "create_api_client", "--tenant", "tenant_omega",
                               "--name", "dashboard", "--scopes",
                               "runs:read runs:write gates:request gates:resolve audit:read",
                               capture=True).stdout.strip().splitlines()[-1])
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    serve = subprocess.Popen([sys.executable, "manage.py", "serve", "--port", str(port)],
                             cwd=ROOT, env=env, start_new_session=True,
                             stdout=open(var / "serve.log", "w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not (_listening(port) and get(f"{base}/healthz")[0] == 200):
            if time.monotonic() > deadline or serve.poll() is not None:
                raise SystemExit(f"serve did not start: {(var / 'serve.log').read_text()[-2000:]}")
            time.sleep(0.5)
        stop = threading.Event()
        traffic = threading.Thread(target=_traffic, args=(env, base, client, stop))
        traffic.start()
        samples, started = [], time.monotonic()
        while time.monotonic() - started < seconds:
            status, body = get(f"{base}/metrics")
            if status == 200:
                samples.append((time.time(), parse(body.decode())))
            time.sleep(max(0.0, every - (time.monotonic() - started) % every))
        stop.set()
        traffic.join(120)
        print("readyz:", get(f"{base}/readyz")[1].decode())
        return samples
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        serve.wait(60)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _traffic(env, base, client, stop: threading.Event) -> None:
    """The PT-004 proof again and again (runs, steps, a flag approved, a deny), a few
    probes and a page that does not exist, until `stop`."""
    proofs = failed = 0
    while not stop.is_set():
        try:
            manage(env, "proof", "--url", base, "--kid", client["kid"], "--secret",
                   client["secret"], "--out", str(Path(env["FCORE_VAR_DIR"]) / "proof"),
                   capture=True)
            proofs += 1
        except subprocess.CalledProcessError as exc:  # e.g. a time-out on a loaded machine
            failed += 1
            print(f"a proof run failed: {exc.stdout[-500:]}", file=sys.stderr)
        for path in ("/healthz", "/readyz", "/no/such/page", "/console/login/"):
            get(base + path)
        stop.wait(2)
    print(f"{proofs} proof runs passed, {failed} failed")


def parse(text: str) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


# ---- a small evaluator for the dashboard's expressions ----------------------------------

QUANTILE = re.compile(r"^histogram_quantile\(([\d.]+),\s*(.+)\)$")
AGGREGATE = re.compile(r"^(sum|max)(?:\s+by\s+\(([\w,\s]*)\))?\s*\((.+)\)$")
RATE = re.compile(r"^rate\((.+)\[(\d+)([sm])\]\)$")
SELECTOR = re.compile(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?$")
MATCHER = re.compile(r'(\w+)\s*(=~|!=|=)\s*"([^"]*)"')


def evaluate(expr: str, samples: list[tuple[float, dict]], at: int) -> dict[tuple, float]:
    """The value of `expr` at scrape number `at`: {label set: value}."""
    expr = expr.strip()
    if m := QUANTILE.match(expr):
        return quantile(float(m.group(1)), evaluate(m.group(2), samples, at))
    if m := AGGREGATE.match(expr):
        op, by, inner = m.group(1), m.group(2), m.group(3)
        keep = [label.strip() for label in (by or "").split(",") if label.strip()]
        groups: dict[tuple, list[float]] = {}
        for labels, value in evaluate(inner, samples, at).items():
            key = tuple((k, v) for k, v in labels if k in keep)
            groups.setdefault(key, []).append(value)
        return {key: (sum(v) if op == "sum" else max(v)) for key, v in groups.items()}
    if m := RATE.match(expr):
        window = int(m.group(2)) * (60 if m.group(3) == "m" else 1)
        return rate(m.group(1), samples, at, window)
    if m := SELECTOR.match(expr):
        return select(m.group(1), m.group(2), samples[at][1])
    raise SystemExit(f"the snapshot's evaluator does not understand: {expr}")


def select(name: str, matchers: str | None, scrape: dict) -> dict[tuple, float]:
    tests = MATCHER.findall(matchers or "")
    found = {}
    for (sample, labels), value in scrape.items():
        have = dict(labels)
        if sample == name and all(
                (re.fullmatch(v, have.get(k, "")) if op == "=~" else
                 (have.get(k, "") == v) == (op == "=")) for k, op, v in tests):
            found[labels] = value
    return found


def rate(selector: str, samples, at: int, window: float) -> dict[tuple, float]:
    m = SELECTOR.match(selector)
    now = samples[at][0]
    inside = [(t, select(m.group(1), m.group(2), scrape)) for t, scrape in samples[:at + 1]
              if now - t <= window]
    if len(inside) < 2:
        return {}
    rates = {}
    for labels in inside[-1][1]:
        points = [(t, values[labels]) for t, values in inside if labels in values]
        if len(points) < 2:
            continue
        pairs = zip(points, points[1:], strict=False)
        grown = sum(b - a if b >= a else b for (_, a), (_, b) in pairs)  # b < a: a reset
        rates[labels] = grown / (points[-1][0] - points[0][0])
    return rates


def quantile(q: float, buckets: dict[tuple, float]) -> dict[tuple, float]:
    series: dict[tuple, list[tuple[float, float]]] = {}
    for labels, value in buckets.items():
        rest = tuple((k, v) for k, v in labels if k != "le")
        series.setdefault(rest, []).append((float(dict(labels)["le"]), value))
    result = {}
    for labels, points in series.items():
        points.sort()
        total = points[-1][1]
        if total <= 0:
            continue
        rank, lower_bound, lower_count = q * total, 0.0, 0.0
        for bound, count in points:
            if count >= rank:
                if math.isinf(bound):
                    result[labels] = lower_bound
                else:
                    share = ((rank - lower_count) / (count - lower_count)
                             if count > lower_count else 0)
                    result[labels] = lower_bound + (bound - lower_bound) * share
                break
            lower_bound, lower_count = bound, count
    return result


def legend(template: str, labels: tuple) -> str:
    have = dict(labels)
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: have.get(m.group(1), ""), template).strip()


# ---- the page ----------------------------------------------------------------------------

def panel_series(panel, samples) -> dict[str, list[tuple[float, float]]]:
    lines: dict[str, list[tuple[float, float]]] = {}
    for target in panel["targets"]:
        for at in range(len(samples)):
            for labels, value in evaluate(target["expr"], samples, at).items():
                name = legend(target.get("legendFormat", ""), labels) or target["expr"]
                lines.setdefault(name, []).append((samples[at][0], value))
    return lines


def fmt(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"
    return f"{value:.2f}" if value < 10 else f"{value:.0f}"


def svg(lines, unit, t0, t1, width=520, height=190) -> str:
    left, bottom = 58, 22
    top = max([v for points in lines.values() for _, v in points] + [0]) * 1.1 or 1
    def x(t):
        return left + (t - t0) / max(t1 - t0, 1) * (width - left - 8)
    def y(v):
        return height - bottom - v / top * (height - bottom - 8)
    parts = [f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">']
    for i in range(5):
        v = top * i / 4
        parts.append(f'<line x1="{left}" x2="{width - 8}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                     f'stroke="#2c3235"/><text x="{left - 6}" y="{y(v) + 4:.1f}" '
                     f'text-anchor="end">{escape(fmt(v, unit))}</text>')
    for i in range(4):
        t = t0 + (t1 - t0) * i / 3
        anchor = ("start", "middle", "middle", "end")[i]
        parts.append(f'<text x="{x(t):.1f}" y="{height - 5}" text-anchor="{anchor}">'
                     f'{time.strftime("%H:%M:%S", time.gmtime(t))}</text>')
    for i, (_name, points) in enumerate(sorted(lines.items())):
        path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in points)
        parts.append(f'<polyline fill="none" stroke="{COLOURS[i % len(COLOURS)]}" '
                     f'stroke-width="2" points="{path}"/>')
    parts.append("</svg>")
    return "".join(parts)


def page(dashboard, samples) -> str:
    t0, t1 = samples[0][0], samples[-1][0]
    cells = []
    for panel in dashboard["panels"]:
        lines = panel_series(panel, samples)
        unit = panel["fieldConfig"]["defaults"].get("unit", "short")
        keys = "".join(
            f'<span><i style="background:{COLOURS[i % len(COLOURS)]}"></i>{escape(name)} '
            f'<b>{escape(fmt(points[-1][1], unit))}</b></span>'
            for i, (name, points) in enumerate(sorted(lines.items())))
        cells.append(f'<section><h2>{escape(panel["title"])}</h2>'
                     f'{svg(lines, unit, t0, t1)}<div class="keys">{keys or "no data"}</div>'
                     f"</section>")
    span = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t0))
    return f"""<!doctype html><meta charset="utf-8"><style>
body {{ background:#111217; color:#ccccdc; font:12px sans-serif; margin:12px; }}
h1 {{ font-size:16px; margin:0 0 10px; }} h1 small {{ color:#8e8e9e; font-weight:normal; }}
main {{ display:grid; grid-template-columns:repeat(3, 540px); gap:10px; }}
section {{ background:#181b1f; border:1px solid #2c3235; border-radius:3px; padding:8px; }}
h2 {{ font-size:13px; margin:0 0 4px; color:#d8d9da; }}
svg text {{ fill:#8e8e9e; font-size:10px; }}
.keys span {{ display:inline-block; margin:2px 10px 0 0; }}
.keys i {{ display:inline-block; width:12px; height:3px; margin-right:4px; vertical-align:middle; }}
</style><h1>{escape(dashboard["title"])} <small>— the dashboard's panels over {len(samples)}
scrapes of a real run, {span} UTC to {time.strftime("%H:%M:%S", time.gmtime(t1))}
(bench/dashboard_snapshot.py)</small></h1><main>{"".join(cells)}</main>"""


def screenshot(html: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    source = out.resolve().with_suffix(".html")
    source.write_text(html, encoding="utf-8")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium")
        tab = browser.new_page(viewport={"width": 1680, "height": 1000})
        tab.goto(source.as_uri())
        tab.screenshot(path=str(out), full_page=True)
        browser.close()
    source.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=150)
    parser.add_argument("--every", type=float, default=5, help="seconds between scrapes")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/grafana/federation-core.png")
    parser.add_argument("--samples", type=Path, default=None,
                        help="also keep the scrapes in this JSON file")
    parser.add_argument("--from-samples", type=Path, default=None,
                        help="draw from scrapes kept earlier instead of a new run")
    args = parser.parse_args()
    dashboard = json.loads(DASHBOARD.read_text())
    if args.from_samples:
        samples = [(t, {(name, tuple(map(tuple, labels))): v for name, labels, v in rows})
                   for t, rows in json.loads(args.from_samples.read_text())]
    else:
        samples = run_fc(args.seconds, args.every)
    if args.samples:
        args.samples.write_text(json.dumps(
            [(t, [(name, labels, v) for (name, labels), v in scrape.items()])
             for t, scrape in samples]))
    if len(samples) < 3:
        raise SystemExit("too few scrapes")
    screenshot(page(dashboard, samples), args.out)
    print(f"{len(samples)} scrapes; wrote {args.out}")


if __name__ == "__main__":
    main()
