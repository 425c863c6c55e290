"""Helper process for the idle-connections benchmark: hold many connected, idle proxies.

``python -m benchmarks.idle_clients --impl pyroplug|pyro4 --uri URI --count N`` connects N proxies one
after the other (handshake included) and prints one line: ``ok N`` when all are connected, or
``refused K <message>`` when connection K+1 failed (K were connected). It then holds the connections
until its stdin is closed.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import threading
import time


def _raise_nofile() -> None:
    try:
        import resource

        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass


def main(argv: list[str] | None = None) -> int:
    """Connect, report, hold until stdin closes."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.idle_clients", description=__doc__.splitlines()[0])
    parser.add_argument("--impl", choices=("pyroplug", "pyro4"), required=True)
    parser.add_argument("--uri", required=True)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--serializer", default="marshal")
    parser.add_argument("--max-seconds", type=float, default=600.0)
    args = parser.parse_args(argv)
    _raise_nofile()
    threading.Thread(target=lambda: (time.sleep(args.max_seconds), os._exit(3)), daemon=True).start()
    impl = importlib.import_module("pyroplug" if args.impl == "pyroplug" else "Pyro4")
    proxies = []
    status = f"ok {args.count}"
    for i in range(args.count):
        proxy = impl.Proxy(args.uri)
        proxy._pyroSerializer = args.serializer
        proxy._pyroTimeout = 10.0
        try:
            proxy._pyroBind()
        except Exception as exc:  # noqa: BLE001 - the refusal is what we report
            status = f"refused {i} {type(exc).__name__}: {exc}"
            break
        proxies.append(proxy)
    print(status, flush=True)
    sys.stdin.read()
    os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main())
