"""servers.rst, "Server types and Concurrency model": ``python concurrency_server.py thread|multiplex``.

One single-instance object with a slow method. The thread server runs calls from different
proxies at the same time; the multiplex server runs one call at a time. Run
``concurrency_client.py URI`` to measure it.
"""

import sys
import time

import pyroplug as Pyro4

Pyro4.config.SERVERTYPE = sys.argv[1] if len(sys.argv) > 1 else "thread"


@Pyro4.behavior(instance_mode="single")
class Sleeper(object):
    def sleep(self, seconds):
        time.sleep(seconds)
        return seconds


daemon = Pyro4.Daemon(host="127.0.0.1")
uri = daemon.register(Sleeper)
print(uri)
print("server type:", Pyro4.config.SERVERTYPE)
daemon.requestLoop()
