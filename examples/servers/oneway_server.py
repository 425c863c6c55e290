"""servers.rst, "Specifying one-way methods using the @Pyro4.oneway decorator".

The chapter's PyroService; ``do_long_calculation`` (not shown in the chapter) sleeps half a second.
Publishes the service on 127.0.0.1 and prints its URI; run ``oneway_client.py URI``.
"""

import sys
import time

import pyroplug as Pyro4


def do_long_calculation(args):
    time.sleep(0.5)
    result = args * 2
    sys.stdout.write(f"calculated {result}\n")   # one write: the two calls may print at the same time
    return result


class PyroService(object):

    def normal_method(self, args):
        result = do_long_calculation(args)
        return result

    @Pyro4.oneway
    def oneway_method(self, args):
        result = do_long_calculation(args)
        # no return value, cannot return anything to the client


daemon = Pyro4.Daemon(host="127.0.0.1")
uri = daemon.register(PyroService)
print(uri)
daemon.requestLoop()
