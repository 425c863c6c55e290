"""Client for instancemode_server.py: ``python instancemode_client.py URI [URI ...]``.

Two proxies (two sessions) call ``count()`` twice each on every object.
"""

import sys

import pyroplug as Pyro4

for uri in sys.argv[1:]:
    with Pyro4.Proxy(uri) as first, Pyro4.Proxy(uri) as second:
        counts = [first.count(), first.count(), second.count(), second.count()]
        print(f"{Pyro4.URI(uri).object}: first proxy {counts[:2]}, second proxy {counts[2:]}")
