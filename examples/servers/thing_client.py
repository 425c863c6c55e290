"""Client for the MyPyroThing servers: ``python thing_client.py URI [URI ...]`` calls ``hello`` on each."""

import sys

import pyroplug as Pyro4

for uri in sys.argv[1:]:
    with Pyro4.Proxy(uri) as thing:
        print(thing.hello("client"))
