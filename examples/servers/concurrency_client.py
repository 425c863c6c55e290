"""Client for concurrency_server.py: two proxies (two clients) each make one 0.5 s call at the same time."""

import sys
import threading
import time

import pyroplug as Pyro4

proxies = [Pyro4.Proxy(sys.argv[1]) for _ in range(2)]
for proxy in proxies:
    proxy._pyroBind()   # connect first: only the calls are timed
threads = [threading.Thread(target=proxy.sleep, args=(0.5,)) for proxy in proxies]
start = time.time()
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(f"two 0.5 s calls from two clients took {time.time() - start:.2f} s")
for proxy in proxies:
    proxy._pyroRelease()
