"""The pricing service, migrated to pyroplug: registered as ``fleet.pricing``.

This is the Pyro4 code it always was; only the import changed (``import pyroplug as Pyro4``). Its
``quote()`` calls the Pyro4 inventory service back, through the same name server, for a scarcity
surcharge. Prints ``READY <uri>`` once registered; stops on SIGTERM.
"""

from __future__ import annotations

import signal
import sys

import pyroplug as Pyro4

PRICES = {"widget": 2.50, "gadget": 99.00}


@Pyro4.expose
class Pricing:
    def quote(self, item: str, count: int) -> dict:
        with Pyro4.Proxy("PYRONAME:fleet.inventory") as inventory:  # a stock Pyro4 service
            left = inventory.stock(item)
        surcharge = 1.5 if left - count < 2 else 1.0
        return {"item": item, "total": round(PRICES[item] * count * surcharge, 2),
                "by": f"pyroplug {Pyro4.__version__}"}


def main() -> None:
    daemon = Pyro4.Daemon(host="127.0.0.1")
    uri = daemon.register(Pricing, "pricing")
    with Pyro4.locateNS() as ns:
        ns.register("fleet.pricing", uri)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # SystemExit leaves the request loop
    print("READY", uri, flush=True)
    try:
        daemon.requestLoop()
    finally:
        daemon.close()


if __name__ == "__main__":
    main()
