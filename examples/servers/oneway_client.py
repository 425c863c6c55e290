"""Client for oneway_server.py: ``python oneway_client.py URI``.

The proxy learns from the daemon which methods are oneway; such a call returns at once.
"""

import sys
import time

import pyroplug as Pyro4

with Pyro4.Proxy(sys.argv[1]) as service:
    service._pyroBind()
    print("oneway methods:", sorted(service._pyroOneway))
    start = time.time()
    result = service.oneway_method(100)
    print(f"oneway_method(100) returned {result!r} after {time.time() - start:.2f} s")
    start = time.time()
    result = service.normal_method(21)
    print(f"normal_method(21) returned {result!r} after {time.time() - start:.2f} s")
