"""servers.rst, Example 1, client: ``python example1_client.py URI`` (the URI the server printed)."""

import sys

import pyroplug as Pyro4

# use the URI that the server printed:
uri = sys.argv[1] if len(sys.argv) > 1 else "PYRO:obj_b2459c80671b4d76ac78839ea2b0fb1f@localhost:49383"
thing = Pyro4.Proxy(uri)
print(thing.method(42))   # prints 84
