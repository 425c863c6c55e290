"""The inventory service, still on stock Pyro4 4.82: registered as ``fleet.inventory``.

``reserve()`` asks the pricing service (already migrated to pyroplug) for a quote, through the
name server, and the pricing service calls back into this service's ``stock()`` while doing so.
Prints ``READY <uri>`` once registered; stops on SIGTERM.
"""

from __future__ import annotations

import signal
import sys
import threading

import Pyro4


@Pyro4.expose
@Pyro4.behavior(instance_mode="single")
class Inventory:
    def __init__(self) -> None:
        self._stock = {"widget": 10, "gadget": 2}
        self._lock = threading.Lock()

    def stock(self, item: str) -> int:
        return self._stock.get(item, 0)

    def reserve(self, item: str, count: int) -> dict:
        with self._lock:
            if self._stock.get(item, 0) < count:
                raise ValueError(f"only {self._stock.get(item, 0)} {item}(s) left")
        with Pyro4.Proxy("PYRONAME:fleet.pricing") as pricing:  # a pyroplug service
            quote = pricing.quote(item, count)
        with self._lock:
            self._stock[item] -= count
        return {"item": item, "count": count, "total": quote["total"], "priced_by": quote["by"],
                "served_by": f"Pyro4 {Pyro4.__version__}"}


def main() -> None:
    daemon = Pyro4.Daemon(host="127.0.0.1")
    uri = daemon.register(Inventory, "inventory")
    with Pyro4.locateNS() as ns:
        ns.register("fleet.inventory", uri)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # SystemExit leaves the request loop
    print("READY", uri, flush=True)
    try:
        daemon.requestLoop()
    finally:
        daemon.close()


if __name__ == "__main__":
    main()
