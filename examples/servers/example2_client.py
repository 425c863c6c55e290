"""servers.rst, Example 2, client: finds "mythingy" through the name server (PYRO_NS_HOST / PYRO_NS_PORT)."""

import pyroplug as Pyro4

thing = Pyro4.Proxy("PYRONAME:mythingy")
print(thing.method(42))   # prints 84
