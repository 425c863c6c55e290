"""Client for autoproxy_server.py: ``python autoproxy_client.py URI``."""

import sys

import pyroplug as Pyro4

with Pyro4.Proxy(sys.argv[1]) as factory:
    thing = factory.some_pyro_method()
    print("got a proxy:", isinstance(thing, Pyro4.Proxy))
    print("it points at a new object in the server:", thing._pyroUri.object != factory._pyroUri.object)
    with thing:
        print("increment() three times:", [thing.increment() for _ in range(3)])
