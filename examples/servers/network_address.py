"""servers.rst, "Network adapter binding and localhost": Pyro4.socketutil.getIpAddress / getInterfaceAddress.

Finds the address of a host name and the local interface address used to reach an address (here
the loopback ones, so the example runs anywhere), then binds a daemon on it.
"""

import pyroplug as Pyro4
import pyroplug.socketutil  # noqa: F401 - Pyro4's ``import Pyro4`` imports it too (see examples/README.md)

print("getIpAddress('localhost'):", Pyro4.socketutil.getIpAddress("localhost"))
print("getIpAddress('127.0.0.1'):", Pyro4.socketutil.getIpAddress("127.0.0.1"))
address = Pyro4.socketutil.getInterfaceAddress("127.0.0.1")
print("getInterfaceAddress('127.0.0.1'):", address)
with Pyro4.Daemon(host=address) as daemon:
    print("daemon bound on:", daemon.locationStr)
