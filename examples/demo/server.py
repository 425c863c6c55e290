"""Demo server: one daemon (chosen server type and transport) registering its objects in the name server."""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from services import Calculator, PerCallCounter, SessionCounter, SingleCounter  # noqa: E402

import pyroplug as Pyro4  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--servertype", choices=["thread", "multiplex"], required=True)
    parser.add_argument("--unixsocket", help="serve on this unix socket instead of TCP 127.0.0.1")
    parser.add_argument("--ns-port", type=int, required=True)
    args = parser.parse_args()
    Pyro4.config.SERVERTYPE = args.servertype
    Pyro4.config.NS_HOST = "127.0.0.1"
    Pyro4.config.NS_PORT = args.ns_port
    # This demo opts in to every serializer; a default daemon accepts only serpent, json and marshal.
    Pyro4.config.SERIALIZERS_ACCEPTED = {"serpent", "json", "marshal", "msgpack", "pickle", "dill"}
    transport = "unix" if args.unixsocket else "tcp"
    with Pyro4.Daemon(host="127.0.0.1", unixsocket=args.unixsocket) as daemon:
        ns = Pyro4.locateNS(broadcast=False)
        prefix = f"demo.{args.servertype}.{transport}."
        for obj, name in ((Calculator(), "calculator"), (SingleCounter, "single"), (SessionCounter, "session"), (PerCallCounter, "percall")):
            ns.register(prefix + name, daemon.register(obj))
        ns._pyroRelease()
        print("ready", daemon.locationStr, flush=True)
        daemon.requestLoop()


if __name__ == "__main__":
    main()
