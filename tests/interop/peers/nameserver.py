"""Name-server peer: a stock Pyro4 4.82 or pyroplug name server plus a UDP broadcast responder on loopback.

Run as ``python nameserver.py --flavor pyro4|pyroplug --host 127.0.0.1 --bcport PORT``. Both name
server CLIs refuse to run a broadcast responder for a loopback NS (Pyro4's rule), and the tests must
never send traffic beyond loopback, so this peer builds the NS with the library's own ``startNS``
and starts the library's own ``BroadcastServer`` explicitly on ``127.0.0.1:PORT``.
Prints ``URI ns=<name server uri>`` and ``URI bc=<responder host:port>``, then ``READY``.
Exits on SIGTERM/SIGINT or after ``--lifetime`` seconds.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import threading


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--flavor", choices=("pyro4", "pyroplug"), default="pyro4")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--bcport", type=int, required=True)
    parser.add_argument("--lifetime", type=float, default=300.0)
    options = parser.parse_args()

    pyro = importlib.import_module("Pyro4" if options.flavor == "pyro4" else "pyroplug")
    naming = importlib.import_module(f"{pyro.__name__}.naming")
    uri, daemon, _ = naming.startNS(options.host, 0, enableBroadcast=False)
    responder = naming.BroadcastServer(daemon.uriFor(pyro.constants.NAMESERVER_NAME, nat=False), options.host,
                                       options.bcport)
    responder.runInThread()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    loop = threading.Thread(target=daemon.requestLoop, name="ns", daemon=True)
    loop.start()
    print(f"URI ns={uri}")
    print(f"URI bc={responder.locationStr}")
    print("READY", flush=True)
    stop.wait(options.lifetime)
    daemon.shutdown()
    responder.close()
    loop.join(2.0)
    os._exit(0)


if __name__ == "__main__":
    main()
