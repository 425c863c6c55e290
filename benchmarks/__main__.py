"""``python -m benchmarks`` (``make bench``): run every benchmark module and print one summary table.

Add a benchmark by writing a module with ``run(quick: bool = False) -> list[benchmarks.Result]`` and
adding an entry to :data:`BENCHMARKS`. Options: ``--quick`` (fewer, shorter rounds), ``--only NAME``
(repeatable), ``--strict`` (exit status 1 when a case misses its target).
"""

from __future__ import annotations

import argparse
import importlib
import platform
import time
import traceback

from benchmarks import Result

#: (short name, module) of every benchmark, in the order they run
BENCHMARKS: list[tuple[str, str]] = [
    ("codec", "benchmarks.bench_codec"),
    ("calls", "benchmarks.bench_calls"),
    ("load", "benchmarks.bench_load"),
    ("profile", "benchmarks.bench_profile"),
    ("naming", "benchmarks.bench_naming"),
]


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def format_table(results: list[Result]) -> str:
    """The summary table: one row per case, with the ratio and the verdict against its target."""
    header = ("benchmark", "case", "pyroplug", "Pyro4 4.82", "ratio", "target", "")
    rows = [header]
    for r in results:
        rows.append(
            (
                r.benchmark,
                r.case,
                f"{_rate(r.ours)} {r.unit}",
                f"{_rate(r.theirs)} {r.unit}" if r.theirs is not None else "-",
                f"{r.ratio:.2f}x" if r.ratio is not None else "-",
                f">={r.target:g}x" if r.target is not None else "",
                r.verdict + (f"  {r.note}" if r.note else ""),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    right = {2, 3, 4}
    lines = []
    for index, row in enumerate(rows):
        cells = [cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmarks and print their results and the summary table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter rounds")
    parser.add_argument("--only", action="append", metavar="NAME", help="run only this benchmark (repeatable)")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when a target is missed")
    args = parser.parse_args(argv)

    selected = [(name, module) for name, module in BENCHMARKS if not args.only or name in args.only]
    if args.only and len(selected) != len(set(args.only)):
        known = ", ".join(name for name, _ in BENCHMARKS)
        parser.error(f"unknown benchmark in {args.only}; known: {known}")
    print(f"pyroplug benchmarks on {platform.python_implementation()} {platform.python_version()}, {platform.machine()}")
    results: list[Result] = []
    failed: list[str] = []
    for name, module_name in selected:
        print(f"\n== {name} ({module_name})", flush=True)
        start = time.perf_counter()
        try:
            module = importlib.import_module(module_name)
            found = module.run(quick=args.quick)
        except Exception:  # noqa: BLE001 - one broken benchmark must not hide the others
            traceback.print_exc()
            failed.append(name)
            continue
        for result in found:
            ratio = f"  ratio {result.ratio:.2f}x" if result.ratio is not None else ""
            print(f"   {result.case}: {_rate(result.ours)} vs {_rate(result.theirs)} {result.unit}{ratio}")
        results.extend(found)
        print(f"   ({time.perf_counter() - start:.1f}s)")
    print("\n" + format_table(results))
    if failed:
        print(f"\nbenchmarks that failed to run: {', '.join(failed)}")
    missed = [r for r in results if r.verdict == "MISS"]
    if missed:
        print(f"\n{len(missed)} case(s) below target: " + ", ".join(f"{r.benchmark}/{r.case}" for r in missed))
    return 1 if failed or (args.strict and missed) else 0


if __name__ == "__main__":
    raise SystemExit(main())
