"""servers.rst, Example 1, server: "alternatively, using serveSimple". Run ``example1_client.py URI``."""

import pyroplug as Pyro4


class Thing(object):
    def method(self, arg):
        return arg*2


# ------ alternatively, using serveSimple -----
Pyro4.Daemon.serveSimple(
    {
        Thing(): None
    },
    ns=False, verbose=True)
