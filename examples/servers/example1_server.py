"""servers.rst, "Intermission: Example 1: server and client not using name server" (server, normal code).

The chapter's code; the daemon binds the configured HOST (localhost by default). Run
``example1_client.py URI`` with the printed URI. example1_servesimple.py is the chapter's
serveSimple alternative.
"""

import pyroplug as Pyro4


class Thing(object):
    def method(self, arg):
        return arg*2


# ------ normal code ------
daemon = Pyro4.Daemon()
uri = daemon.register(Thing())
print("uri=", uri)
daemon.requestLoop()
