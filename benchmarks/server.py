"""Benchmark server: one ``Bench`` object in a daemon of pyroplug or stock Pyro4, in its own process.

``python -m benchmarks.server --impl pyroplug|pyro4 --servertype thread|multiplex --transport tcp|unix
--serializers marshal,json,...`` prints the object's URI as its first line on stdout, then serves until
its stdin is closed (or ``--max-seconds`` pass). The configuration travels as ``PYRO_*`` environment
variables, set here before the implementation is imported, so both implementations read exactly the
same settings the way their users would set them. ``--profile FILE`` runs the request loop under
cProfile and writes the stats to FILE when the server stops (meaningful for ``multiplex``, whose loop
handles every call in the main thread).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import threading
import time
from typing import Any

OBJECT_ID = "bench"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.server", description=__doc__.splitlines()[0])
    parser.add_argument("--impl", choices=("pyroplug", "pyro4"), required=True)
    parser.add_argument("--servertype", choices=("thread", "multiplex"), default="thread")
    parser.add_argument("--transport", choices=("tcp", "unix"), default="tcp")
    parser.add_argument("--serializers", default="serpent,json,marshal,pickle,msgpack",
                        help="comma-separated SERIALIZERS_ACCEPTED")
    parser.add_argument("--threadpool", type=int, default=0, help="THREADPOOL_SIZE (0: the default)")
    parser.add_argument("--profile", metavar="FILE", help="run the request loop under cProfile, stats to FILE")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="exit after this long, whatever happens")
    return parser.parse_args(argv)


def _raise_nofile() -> None:
    """Lift the soft RLIMIT_NOFILE to the hard limit (a daemon holding 1,000+ connections needs it)."""
    try:
        import resource

        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass


def make_bench_class(impl: Any) -> type:
    """The benchmark object's class, decorated with ``impl``'s expose/oneway."""

    @impl.expose
    class Bench:
        """Small calls, an echo, and a counter bumped by oneway calls."""

        def __init__(self) -> None:
            self._count = 0
            self._lock = threading.Lock()

        def add(self, a: int, b: int) -> int:
            return a + b

        def echo(self, value: Any) -> Any:
            return value

        @impl.oneway
        def tick(self) -> None:
            with self._lock:
                self._count += 1

        def count(self) -> int:
            return self._count

        def reset(self) -> int:
            with self._lock:
                old, self._count = self._count, 0
            return old

    return Bench


def main(argv: list[str] | None = None) -> int:
    """Start the daemon, print its URI, serve until stdin closes."""
    args = _parse(argv)
    os.environ["PYRO_SERVERTYPE"] = args.servertype
    os.environ["PYRO_SERIALIZERS_ACCEPTED"] = args.serializers
    if args.threadpool:
        os.environ["PYRO_THREADPOOL_SIZE"] = str(args.threadpool)
    _raise_nofile()
    impl = importlib.import_module("pyroplug" if args.impl == "pyroplug" else "Pyro4")
    unixsocket = None
    if args.transport == "unix":
        unixsocket = os.path.join(tempfile.mkdtemp(prefix="pyroplug-bench-"), "server.sock")
    daemon = impl.Daemon(host="127.0.0.1", unixsocket=unixsocket)
    uri = daemon.register(make_bench_class(impl)(), OBJECT_ID)

    def stop_when_told() -> None:
        try:
            sys.stdin.read()  # returns at EOF: the harness closed our stdin (or died)
        finally:
            daemon.shutdown()

    def watchdog() -> None:
        time.sleep(args.max_seconds)
        os._exit(3)

    threading.Thread(target=stop_when_told, daemon=True).start()
    threading.Thread(target=watchdog, daemon=True).start()
    print(uri, flush=True)
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile(time.thread_time_ns, 1e-9)  # CPU time: waiting in poll() is not cost
        profiler.enable()
    try:
        daemon.requestLoop()
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
        if unixsocket:
            try:
                os.unlink(unixsocket)
                os.rmdir(os.path.dirname(unixsocket))
            except OSError:
                pass
    # skip interpreter teardown: lingering worker threads of either implementation do not matter here
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main())
