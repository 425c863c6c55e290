"""servers.rst, Example 2, server: "alternatively, using serveSimple" with ns=True ("yourhostname" -> 127.0.0.1).

Needs a running name server (PYRO_NS_HOST / PYRO_NS_PORT). Run ``example2_client.py``.
"""

import pyroplug as Pyro4


class Thing(object):
    def method(self, arg):
        return arg*2


# ------ alternatively, using serveSimple -----
Pyro4.Daemon.serveSimple(
    {
        Thing(): "mythingy"
    },
    ns=True, verbose=True, host="127.0.0.1")
