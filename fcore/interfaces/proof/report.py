"""The proof report: Markdown like the PT-004 seeds, JSON with everything."""

import json
from pathlib import Path


def _mark(ok) -> str:
    return "✅" if ok else "❌"


def report_markdown(report: dict) -> str:
    """The proof report in Markdown, shaped like the PT-004 campaign's reports."""
    status = "PASSED" if report["passed"] else "FAILED"
    out = ["# PT-004 Execution Proof Report", "",
           f"**Campaign**: {report['campaign']}  ",
           f"**Date**: {report['date']}  ",
           f"**Federation Core**: {report['url']} (tenant `{report['tenant']}`)  ",
           f"**Workflow**: `{report['workflow']}`  ",
           f"**Actors**: `{report['actor']}` (executor), `{report['approver']}` (approver)  ",
           f"**Status**: {_mark(report['passed'])} **{status}**", "", "---", ""]
    for t in report["tests"]:
        out += [f"## {t['title']}", "", f"**Run ID**: `{t['run_id'] or '-'}`  ",
                f"**Input**: `{json.dumps(t['input'])}`  ",
                f"**Final status**: `{t['final_status']}`  ",
                f"**Result**: {_mark(t['passed'])} {'PASSED' if t['passed'] else 'FAILED'}",
                ""]
        if t["error"]:
            out += [f"**Error**: `{t['error']}`", ""]
        out += ["**Status Transitions**:"]
        out += [f"- `{x['from'].upper()}` → `{x['to'].upper()}` ({x['reason']})"
                for x in t["transitions"]] or ["- none recorded"]
        out += ["", "**Audit Trail**:", "```"]
        out += [f"{e['code']}: {e['message']}" for e in t["audit_trail"]]
        out += ["```", "", "**Steps and receipts**:", "",
                "| step | status | decision | receipt_hash |", "|---|---|---|---|"]
        out += [f"| {s['step_id']} | {s['status']} | {s['decision'] or '-'} | "
                f"`{s['receipt_hash'] or '-'}` |" for s in t["steps"]]
        out += ["", f"**workflow_hash**: `{t['workflow_hash']}`  ",
                f"**Receipts verified by the server**: {t['receipt_verified']}  ",
                f"**Audit chain recomputed here**: {_mark(t['chain'].get('ok'))} "
                f"{t['chain'].get('events', 0)} events, head `{t['chain'].get('head_hash')}`  ",
                f"**Receipt chain and seal recomputed here**: "
                f"{_mark(t['receipt_chain'].get('ok'))}  ",
                f"**Tenant chains verified by the server**: "
                f"{_mark(t['server_chain'].get('ok'))}", "", "**Checks**:"]
        out += [f"- {_mark(c['ok'])} {c['name']} — {c['detail']}" for c in t["checks"]]
        out += ["", "---", ""]
    out += ["## Summary", "", "| test | run id | result |", "|---|---|---|"]
    out += [f"| {t['title']} | `{t['run_id'] or '-'}` | {_mark(t['passed'])} "
            f"{'PASSED' if t['passed'] else 'FAILED'} |" for t in report["tests"]]
    s = report["summary"]
    out += ["", f"{s['passed']} of {s['tests']} tests passed.", ""]
    return "\n".join(out)


def report_write(report: dict, out_dir: Path) -> tuple[Path, Path]:
    """Write `proof-report.md` and `proof-report.json` into `out_dir` (created)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md, js = out_dir / "proof-report.md", out_dir / "proof-report.json"
    md.write_text(report_markdown(report), encoding="utf-8")
    js.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return md, js


def report_summary(report: dict) -> str:
    """A few plain lines for the terminal."""
    lines = [f"{report['campaign']} — {report['url']}"]
    for t in report["tests"]:
        line = f"  {'PASSED' if t['passed'] else 'FAILED'}  {t['title']}  run {t['run_id'] or '-'}"
        failed = [c["name"] for c in t["checks"] if not c["ok"]]
        if t["error"]:
            failed.insert(0, t["error"])
        lines.append(line + (f"  ({'; '.join(failed)})" if failed else ""))
    s = report["summary"]
    lines.append(f"{s['passed']}/{s['tests']} passed")
    return "\n".join(lines)
