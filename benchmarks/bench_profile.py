"""cProfile of pyroplug's own per-call path: marshal small calls, client side and multiplex server side.

The client profiles ``add(i, 1)`` calls in this process; the server is a multiplex daemon in a
subprocess whose request loop (which runs every call in its main thread) is under cProfile too. The
hot spots (by own time) are printed and saved under ``profile`` in benchmarks/results/latest.json.
Nothing is compared with Pyro4 here, so no ratios come out of this module.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import tempfile
from typing import Any

from benchmarks import Result
from benchmarks.harness import Server, make_proxy, pinned, save_results

NAME = "profile"
CALLS = 20000
TOP = 12


def _top(stats: pstats.Stats, limit: int = TOP) -> list[dict[str, Any]]:
    """The ``limit`` functions with the most own time, with call counts and per-call microseconds."""
    rows = []
    entries = stats.stats  # type: ignore[attr-defined]
    for (filename, line, func), (_cc, ncalls, tottime, cumtime, _callers) in entries.items():
        short = filename
        for marker in ("/pyroplug/", "/lib/python3"):
            if marker in filename:
                short = filename[filename.index(marker) + 1 :]
                break
        where = f"{func}" if filename == "~" else f"{short}:{line}({func})"
        rows.append({"function": where, "ncalls": ncalls, "tottime": tottime, "cumtime": cumtime})
    rows.sort(key=lambda row: row["tottime"], reverse=True)
    return rows[:limit]


def _print(title: str, rows: list[dict[str, Any]], calls: int) -> None:
    print(f"   {title} (own time per remote call, of {calls:,} calls)")
    for row in rows:
        per_call = 1e6 * row["tottime"] / calls
        print(f"     {per_call:7.2f} us  {row['ncalls']:>8}  {row['function']}")


def profile(calls: int = CALLS) -> dict[str, Any]:
    """Profile ``calls`` marshal small calls on both sides; returns the top entries of each."""
    with tempfile.TemporaryDirectory(prefix="pyroplug-profile-") as tmp:
        server_file = os.path.join(tmp, "server.prof")
        with pinned(), Server("pyroplug", "multiplex", "tcp", profile=server_file) as server:
            proxy = make_proxy("pyroplug", server.uri, "marshal")
            add = proxy.add
            for i in range(200):
                add(i, 1)
            profiler = cProfile.Profile()
            profiler.enable()
            for i in range(calls):
                add(i, 1)
            profiler.disable()
            proxy._pyroRelease()
        # stop() closed the server's stdin and waited: it has written its stats
        client_rows = _top(pstats.Stats(profiler))
        server_rows = _top(pstats.Stats(server_file))
    return {"calls": calls, "client": client_rows, "server_multiplex": server_rows}


def run(quick: bool = False) -> list[Result]:
    """Print and save the hot spots; returns no comparable results."""
    found = profile(CALLS // 4 if quick else CALLS)
    _print("client (Proxy call path)", found["client"], found["calls"])
    _print("multiplex server (request loop)", found["server_multiplex"], found["calls"])
    save_results(NAME, [], {"profile": found})
    return []


if __name__ == "__main__":
    run()
