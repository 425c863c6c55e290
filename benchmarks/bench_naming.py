"""Name-server lookups per second: pyroplug's name server vs stock Pyro4 4.82's, 1 client and 16 clients.

Each name server runs in its own process (``python -m pyroplug.naming`` / ``python -m Pyro4.naming``,
memory storage, no broadcast responder, 127.0.0.1). Clients use their own implementation's proxy:
one client in this process, or 16 client processes that all look names up at the same moment for a
fixed time. Rounds alternate between the two implementations; the reported rate is the median.
Run it alone with ``python -m benchmarks.bench_naming`` or as part of ``python -m benchmarks``.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from benchmarks import Result

__all__ = ["run"]

NAMES = 100
TARGET = 2.0
IMPLS = ("pyroplug", "pyro4")
_MODULES = {"pyroplug": "pyroplug.naming", "pyro4": "Pyro4.naming"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYRO_")}
    env["PYRO_BROADCAST_ADDRS"] = "127.0.0.1"  # nothing here broadcasts, but never leave the machine
    return env


def _proxy(impl: str, uri: str) -> Any:
    if impl == "pyroplug":
        from pyroplug.core.proxy import Proxy

        return Proxy(uri)
    import Pyro4

    return Pyro4.Proxy(uri)


@contextmanager
def name_servers() -> Iterator[dict[str, str]]:
    """Both name servers in subprocesses, each with NAMES registrations; yields impl -> NS uri."""
    procs: list[subprocess.Popen[bytes]] = []
    uris: dict[str, str] = {}
    try:
        for impl in IMPLS:
            port = _free_port()
            procs.append(subprocess.Popen([sys.executable, "-m", _MODULES[impl], "-n", "127.0.0.1", "-p", str(port), "-x"],
                                          env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            uris[impl] = f"PYRO:Pyro.NameServer@127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        for impl, uri in uris.items():
            while True:
                try:
                    ns = _proxy(impl, uri)
                    ns._pyroBind()
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            for i in range(NAMES):
                ns.register(f"bench.name{i}", f"PYRO:obj{i}@127.0.0.1:{5000 + i}", metadata={"bench"})
            ns._pyroRelease()
        yield uris
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _lookup_loop(ns: Any, until: float) -> int:
    count = 0
    lookup = ns.lookup
    now = time.perf_counter
    while now() < until:
        for i in range(0, NAMES, 10):
            lookup(f"bench.name{i}")
        count += NAMES // 10
    return count


def _worker(uris: dict[str, str], conn: Any) -> None:
    """A client process: one proxy per implementation; runs timed lookup bursts on request."""
    proxies = {impl: _proxy(impl, uri) for impl, uri in uris.items()}
    for p in proxies.values():
        p._pyroBind()
    conn.send("ready")
    while True:
        msg = conn.recv()
        if msg is None:
            break
        impl, start_at, duration = msg
        while time.time() < start_at:
            time.sleep(0.001)
        start = time.perf_counter()
        count = _lookup_loop(proxies[impl], start + duration)
        conn.send((count, time.perf_counter() - start))
    for p in proxies.values():
        p._pyroRelease()


def one_client(uris: dict[str, str], rounds: int, round_time: float) -> dict[str, float]:
    """Median lookups/s of one client, interleaved rounds."""
    proxies = {impl: _proxy(impl, uri) for impl, uri in uris.items()}
    rates: dict[str, list[float]] = {impl: [] for impl in IMPLS}
    try:
        for p in proxies.values():
            p._pyroBind()
            _lookup_loop(p, time.perf_counter() + 0.2)  # warm up
        for r in range(rounds):
            for impl in IMPLS if r % 2 == 0 else tuple(reversed(IMPLS)):
                start = time.perf_counter()
                count = _lookup_loop(proxies[impl], start + round_time)
                rates[impl].append(count / (time.perf_counter() - start))
    finally:
        for p in proxies.values():
            p._pyroRelease()
    return {impl: statistics.median(values) for impl, values in rates.items()}


def many_clients(uris: dict[str, str], clients: int, rounds: int, round_time: float) -> dict[str, float]:
    """Median aggregate lookups/s of ``clients`` processes looking up at the same time, interleaved rounds."""
    ctx = multiprocessing.get_context("spawn")
    pipes, procs = [], []
    for _ in range(clients):
        here, there = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(uris, there), daemon=True)
        proc.start()
        pipes.append(here)
        procs.append(proc)
    rates: dict[str, list[float]] = {impl: [] for impl in IMPLS}
    try:
        for pipe in pipes:
            try:
                started = pipe.poll(60) and pipe.recv() == "ready"
            except EOFError:
                started = False
            if not started:
                raise RuntimeError("a benchmark client process did not start")
        for r in range(rounds + 1):  # round 0 warms both servers up and is not counted
            for impl in IMPLS if r % 2 == 0 else tuple(reversed(IMPLS)):
                start_at = time.time() + 0.1
                for pipe in pipes:
                    pipe.send((impl, start_at, round_time))
                results = [pipe.recv() for pipe in pipes]
                if r:
                    rates[impl].append(sum(count for count, _ in results) / max(elapsed for _, elapsed in results))
    finally:
        for pipe in pipes:
            try:
                pipe.send(None)
            except OSError:
                pass
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
    return {impl: statistics.median(values) for impl, values in rates.items()}


def run(quick: bool = False) -> list[Result]:
    """Lookups per second against each name server, with 1 and with 16 clients."""
    rounds, round_time = (3, 0.5) if quick else (7, 1.0)
    results = []
    with name_servers() as uris:
        cases: list[tuple[str, Callable[[], dict[str, float]]]] = [
            ("lookup, 1 client", lambda: one_client(uris, rounds, round_time)),
            ("lookup, 16 client processes", lambda: many_clients(uris, 16, rounds, round_time)),
        ]
        for case, measure in cases:
            rates = measure()
            results.append(Result("naming", case, rates["pyroplug"], rates["pyro4"], target=TARGET, unit="lookups/s"))
    return results


def main() -> int:
    """Print the results of a full run."""
    for r in run(quick="--quick" in sys.argv):
        print(f"{r.case}: pyroplug {r.ours:,.0f} {r.unit}, Pyro4 {r.theirs:,.0f} {r.unit}, ratio {r.ratio:.2f}x "
              f"(target >= {r.target:g}x) {r.verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
