"""A client of the mixed fleet: plain Pyro4 code, run with stock Pyro4 or with ``--flavor pyroplug``."""

from __future__ import annotations

import argparse
import importlib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--flavor", choices=("pyro4", "pyroplug"), default="pyro4")
    options = parser.parse_args()
    Pyro4 = importlib.import_module("Pyro4" if options.flavor == "pyro4" else "pyroplug")  # noqa: N806
    me = f"{options.flavor} client"

    with Pyro4.locateNS() as ns:
        print(f"[{me}] name server {ns._pyroUri} lists: {sorted(ns.list(prefix='fleet.'))}")
    with Pyro4.Proxy("PYRONAME:fleet.inventory") as inventory, Pyro4.Proxy("PYRONAME:fleet.pricing") as pricing:
        print(f"[{me}] quote for 3 widgets: {pricing.quote('widget', 3)}")
        print(f"[{me}] reserve 3 widgets: {inventory.reserve('widget', 3)}")
        try:
            inventory.reserve("gadget", 5)
        except ValueError as exc:
            print(f"[{me}] reserve 5 gadgets failed remotely: ValueError: {exc}")
        print(f"[{me}] widgets left: {inventory.stock('widget')}")


if __name__ == "__main__":
    main()
