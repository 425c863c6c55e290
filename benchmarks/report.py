"""Render benchmarks/results/latest.json as the markdown table of README.md's performance section.

``python -m benchmarks.report`` prints the machine line, the table of every compared case (pyroplug,
Pyro4 4.82, ratio, target, PASS/MISS) and the profile's top entries, from the last real run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.harness import RESULTS_FILE

SECTIONS = ("calls", "load")


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "MiB/s":
        return f"{value:,.1f}"
    return f"{value:,.0f}"


def render(data: dict[str, Any]) -> str:
    """The markdown text for ``data`` (the parsed results file)."""
    machine = data.get("machine", {})
    lines = [
        f"Machine: {machine.get('nproc')} CPUs ({machine.get('cpu') or 'unknown CPU'}), "
        f"{machine.get('python')}, {machine.get('platform')}; stock Pyro4 {machine.get('pyro4')}. "
        "Reproduce with `make bench`.",
        "",
        "| scenario | unit | pyroplug | Pyro4 4.82 | ratio | target | |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    sections = data.get("sections", {})
    for name in SECTIONS:
        for row in sections.get(name, {}).get("results", []):
            unit = row["unit"]
            ratio = row.get("ratio")
            target = row.get("target")
            theirs = row.get("pyro4")
            verdict = row.get("verdict") or ""
            note = row.get("note") or ""
            theirs_text = _number(theirs, unit)
            if row["case"].startswith("echo with"):
                theirs_text += " (pyroplug, no idle proxies)"
            remark = "; ".join(part for part in (verdict, note) if part)
            lines.append(
                f"| {row['case']} | {unit} | {_number(row['pyroplug'], unit)} | {theirs_text} | "
                f"{f'{ratio:.2f}x' if ratio is not None else '-'} | "
                f"{f'>= {target:g}x' if target is not None else ''} | {remark} |"
            )
    profile = sections.get("profile", {}).get("profile")
    if profile:
        calls = profile["calls"]
        for side, title in (("client", "client"), ("server_multiplex", "multiplex server")):
            lines += ["", f"cProfile, {calls:,} marshal small calls, {title}: top own time per remote call (with the "
                      "profiler's overhead; blocking socket calls include the peer's time, both being pinned to one CPU)", ""]
            for row in profile[side][:8]:
                lines.append(f"- {1e6 * row['tottime'] / calls:.2f} us  `{row['function']}`")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the markdown for the results file (or the file given as the only argument)."""
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else RESULTS_FILE
    print(render(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
