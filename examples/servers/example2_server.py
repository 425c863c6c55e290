"""servers.rst, "Intermission: Example 2: server and client, with name server" (server, normal code).

"yourhostname" became 127.0.0.1. A name server must be running (PYRO_NS_HOST / PYRO_NS_PORT say
where); the object is registered there as "mythingy". Run ``example2_client.py``.
"""

import pyroplug as Pyro4


class Thing(object):
    def method(self, arg):
        return arg*2


# ------ normal code ------
daemon = Pyro4.Daemon(host="127.0.0.1")
ns = Pyro4.locateNS()
uri = daemon.register(Thing())
ns.register("mythingy", uri)
print(uri)
daemon.requestLoop()
