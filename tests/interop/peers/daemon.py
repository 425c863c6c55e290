"""Daemon peer: hosts the interop Service on several daemons, with stock Pyro4 4.82 or pyroplug.

Run as ``python daemon.py --flavor pyro4|pyroplug --host 127.0.0.1 [--unixsocket PATH] [--ns HOST:PORT]``.
Config comes from ``PYRO_*`` environment variables (e.g. ``PYRO_SERIALIZERS_ACCEPTED``), as for any
Pyro4 program. Daemons, each with a fresh Service registered as ``service``:

- ``plain``: a plain Daemon on TCP;
- ``custom``: the InteropDaemon subclass (validateHandshake accepts "hello" or {"token": "sesame"},
  annotations() adds ``XSRV``) on TCP;
- ``strict``: a plain Daemon on TCP accepting only serpent;
- ``unix``: a plain Daemon on the unix socket ``--unixsocket`` (if given).

Prints ``URI <name>=<uri of its service>`` per daemon, then ``READY``. With ``--ns`` (repeatable) the
plain service is also registered in that name server as ``--ns-name`` (default ``interop.<flavor>``),
with the metadata ``{"interop", <flavor>}``.
Exits on SIGTERM/SIGINT, or by itself after ``--lifetime`` seconds (a safety net for orphans).
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from typing import Any

from service import build


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--flavor", choices=("pyro4", "pyroplug"), default="pyro4")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--unixsocket")
    parser.add_argument("--ns", action="append", default=[],
                        help="HOST:PORT of a name server to register the plain service in (repeatable)")
    parser.add_argument("--ns-name")
    parser.add_argument("--lifetime", type=float, default=300.0)
    options = parser.parse_args()

    Pyro4: Any = importlib.import_module("Pyro4" if options.flavor == "pyro4" else "pyroplug")  # noqa: N806
    classes = build(Pyro4, options.flavor)
    config = Pyro4.config

    daemons: dict[str, Any] = {
        "plain": Pyro4.Daemon(host=options.host),
        "custom": classes["InteropDaemon"](host=options.host),
    }
    accepted = set(config.SERIALIZERS_ACCEPTED)
    config.SERIALIZERS_ACCEPTED = {"serpent"}
    daemons["strict"] = Pyro4.Daemon(host=options.host)
    config.SERIALIZERS_ACCEPTED = accepted
    if options.unixsocket:
        daemons["unix"] = Pyro4.Daemon(unixsocket=options.unixsocket)

    uris = {name: daemon.register(classes["Service"](), "service") for name, daemon in daemons.items()}
    for location in options.ns:
        host, _, port = location.rpartition(":")
        with Pyro4.locateNS(host, int(port)) as ns:
            ns.register(options.ns_name or f"interop.{options.flavor}", uris["plain"], metadata={"interop", options.flavor})

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    threads = []
    for name, daemon in daemons.items():
        t = threading.Thread(target=daemon.requestLoop, name=f"daemon-{name}", daemon=True)
        t.start()
        threads.append(t)
    for name, uri in uris.items():
        print(f"URI {name}={uri}")
    print("READY", flush=True)
    stop.wait(options.lifetime)
    for daemon in daemons.values():
        daemon.shutdown()
    for t in threads:
        t.join(2.0)
    sys.stdout.flush()
    if options.unixsocket and os.path.exists(options.unixsocket):
        os.unlink(options.unixsocket)
    os._exit(0)  # daemon worker threads may still be parked in a socket call


if __name__ == "__main__":
    main()
