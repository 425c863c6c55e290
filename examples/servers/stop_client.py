"""Client for the servers that stop on request: ``python stop_client.py URI`` calls method(21), then stop()."""

import sys

import pyroplug as Pyro4

with Pyro4.Proxy(sys.argv[1]) as service:
    print("method(21) =", service.method(21))
    service.stop()
    print("asked the server to stop")
