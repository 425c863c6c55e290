"""servers.rst, "Attributes added to Pyro objects": ``_pyroId`` and ``_pyroDaemon``, removed on unregister."""

import pyroplug as Pyro4


class Thing(object):
    def method(self, arg):
        return arg*2


with Pyro4.Daemon(host="127.0.0.1") as daemon:
    thing = Thing()
    uri = daemon.register(thing)
    print("_pyroId:", thing._pyroId)
    print("_pyroId is the object id in the uri:", thing._pyroId == uri.object)
    print("_pyroDaemon is the daemon:", thing._pyroDaemon is daemon)
    daemon.unregister(thing)
    print("after unregister, has _pyroId:", hasattr(thing, "_pyroId"))
    print("after unregister, has _pyroDaemon:", hasattr(thing, "_pyroDaemon"))
