"""servers.rst, "Autoproxying": return a registered Pyro object and the client gets a proxy for it.

The chapter's ``some_pyro_method`` in a Factory; SomethingNew counts calls, so the client sees that
it talks to the object in the server, not to a copy. Run ``autoproxy_client.py URI``.
"""

import pyroplug as Pyro4


class SomethingNew(object):
    def __init__(self):
        self.count = 0

    def increment(self):
        self.count += 1
        return self.count


class Factory(object):
    def some_pyro_method(self):
        thing=SomethingNew()
        self._pyroDaemon.register(thing)
        return thing    # just return it, no need to return a proxy


daemon = Pyro4.Daemon(host="127.0.0.1")
uri = daemon.register(Factory())
print(uri)
daemon.requestLoop()
