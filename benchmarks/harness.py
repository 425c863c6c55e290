"""Shared helpers of the end-to-end benchmarks: server subprocesses, proxies of either implementation,
interleaved rounds, and the machine-readable results file.

Servers always run in their own process (:mod:`benchmarks.server`), one per implementation, with the
same server type, transport and accepted serializers; clients run in the benchmark process (or in
worker processes it forks). Each measurement alternates pyroplug and Pyro4 rounds and reports the
median rate of each side.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import os
import platform
import select
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks import Result

__all__ = [
    "IMPLS",
    "REPO",
    "RESULTS_FILE",
    "Server",
    "interleaved",
    "machine",
    "make_proxy",
    "pin_cpu",
    "pinned",
    "rate_for",
    "replicas",
    "rotating",
    "save_results",
    "servers",
]

REPO = Path(__file__).resolve().parent.parent
RESULTS_FILE = REPO / "benchmarks" / "results" / "latest.json"
#: the two implementations, in the order their rounds run
IMPLS = ("pyroplug", "pyro4")
#: every serializer both sides accept in the benchmark servers
ALL_SERIALIZERS = "serpent,json,marshal,pickle,msgpack"
_STARTUP_TIMEOUT = 30.0


def impl_module(impl: str) -> Any:
    """The ``pyroplug`` or ``Pyro4`` module."""
    if impl == "pyroplug":
        import pyroplug

        return pyroplug
    import Pyro4

    return Pyro4


class Server:
    """A benchmark server subprocess (see :mod:`benchmarks.server`); ``uri`` once started.

    Stopped by closing its stdin (it then shuts its daemon down), killed when that takes too long.
    """

    def __init__(
        self,
        impl: str,
        servertype: str = "thread",
        transport: str = "tcp",
        serializers: str = ALL_SERIALIZERS,
        threadpool: int = 0,
        profile: str | None = None,
    ) -> None:
        self.impl = impl
        self.servertype = servertype
        self.transport = transport
        args = [
            sys.executable, "-m", "benchmarks.server", "--impl", impl, "--servertype", servertype,
            "--transport", transport, "--serializers", serializers,
        ]
        if threadpool:
            args += ["--threadpool", str(threadpool)]
        if profile:
            args += ["--profile", profile]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYRO_")}
        self.proc = subprocess.Popen(
            args, cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.uri = self._read_uri()

    def _read_uri(self) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if ready:
                line = self.proc.stdout.readline().strip()
                if line.startswith("PYRO:"):
                    return line
                if not line and self.proc.poll() is not None:
                    break
            elif self.proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError(f"{self.impl} benchmark server did not start (exit status {self.proc.returncode})")

    def stop(self, timeout: float = 10.0) -> None:
        """Close stdin (a clean shutdown, which writes a profile) and wait; kill after ``timeout``."""
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def servers(**options: Any) -> Iterator[dict[str, Server]]:
    """One server per implementation with the same ``options``, stopped on exit."""
    started: dict[str, Server] = {}
    try:
        for impl in IMPLS:
            started[impl] = Server(impl, **options)
        yield started
    finally:
        for server in started.values():
            server.stop()


#: server processes per implementation in the latency cases (see :func:`replicas`)
REPLICAS = 3


@contextlib.contextmanager
def replicas(count: int = REPLICAS, **options: Any) -> Iterator[list[dict[str, Server]]]:
    """``count`` independent server pairs (as :func:`servers` makes one), stopped on exit.

    On this VM a server process now and then runs all its connections 20-40% slower than its twins,
    for its whole life, with either implementation (placement, not code: the same build measured
    again is fast). One server per side would let that coin decide a cell; the latency cases
    therefore rotate their rounds over a few server processes per side (:func:`rotating`) and the
    median sees each process's speed once or twice.
    """
    started: list[contextlib.ExitStack] = []
    pairs: list[dict[str, Server]] = []
    try:
        for _ in range(count):
            stack = contextlib.ExitStack()
            started.append(stack)
            pairs.append(stack.enter_context(servers(**options)))
        yield pairs
    finally:
        for stack in started:
            stack.close()


def rotating(items: list[dict[str, Any]]) -> Callable[[str], Any]:
    """``pick(impl)``: the next of ``items`` (one dict per server pair) for ``impl``, round-robin per impl."""
    turns = {impl: itertools.count() for impl in IMPLS}

    def pick(impl: str) -> Any:
        return items[next(turns[impl]) % len(items)][impl]

    return pick


def make_proxy(impl: str, uri: str, serializer: str | None = None, connect: bool = True) -> Any:
    """A proxy of ``impl`` for ``uri`` speaking ``serializer`` (connected unless told otherwise)."""
    proxy = impl_module(impl).Proxy(uri)
    if serializer:
        proxy._pyroSerializer = serializer
    if connect:
        proxy._pyroBind()
    return proxy


def interleaved(
    rounds: int, run_round: Callable[[str], float], impls: tuple[str, ...] = IMPLS
) -> dict[str, float]:
    """Median of ``run_round(impl)`` (a rate) per implementation over ``rounds`` interleaved rounds.

    The order alternates every round (pyroplug first, then Pyro4 first, ...) so drift in machine
    load hits both sides alike.
    """
    rates: dict[str, list[float]] = {impl: [] for impl in impls}
    for i in range(rounds):
        order = impls if i % 2 == 0 else tuple(reversed(impls))
        for impl in order:
            rates[impl].append(run_round(impl))
    return {impl: statistics.median(values) for impl, values in rates.items()}


def rate_for(func: Callable[[], object], seconds: float, chunk: int = 20) -> float:
    """Calls per second of ``func``, called for about ``seconds`` (whole chunks; garbage collection off)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        loop = range(chunk)
        clock = time.perf_counter
        calls = 0
        start = clock()
        deadline = start + seconds
        while True:
            for _ in loop:
                func()
            calls += chunk
            now = clock()
            if now >= deadline:
                return calls / (now - start)
    finally:
        if enabled:
            gc.enable()


def pin_cpu() -> int:
    """The CPU that single-connection scenarios pin their client and servers to (the last one)."""
    return max(os.sched_getaffinity(0))


@contextlib.contextmanager
def pinned(enabled: bool = True) -> Iterator[None]:
    """Run this process, and the servers it starts meanwhile (they inherit it), on one CPU.

    Single-connection latency scenarios use it: on a small VM a wakeup across CPUs can cost tens of
    microseconds, more than a whole call, and whether the scheduler puts client and server on the same
    CPU or not would otherwise decide the result. Both implementations are pinned alike.
    """
    if not enabled or not hasattr(os, "sched_setaffinity"):
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {pin_cpu()})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def machine() -> dict[str, Any]:
    """Where the numbers come from."""
    import Pyro4

    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "pyro4": Pyro4.__version__,
    }


def save_results(section: str, results: list[Result], extra: dict[str, Any] | None = None) -> None:
    """Merge this benchmark's results into :data:`RESULTS_FILE` under ``section`` (other sections kept)."""
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    try:
        data = json.loads(RESULTS_FILE.read_text())
    except (OSError, ValueError):
        data = {}
    data["machine"] = machine()
    data.setdefault("sections", {})[section] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "results": [
            {
                "benchmark": r.benchmark,
                "case": r.case,
                "pyroplug": r.ours,
                "pyro4": r.theirs,
                "unit": r.unit,
                "ratio": r.ratio,
                "target": r.target,
                "verdict": r.verdict,
                "note": r.note,
            }
            for r in results
        ],
        **(extra or {}),
    }
    tmp = RESULTS_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    tmp.replace(RESULTS_FILE)
