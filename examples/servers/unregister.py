"""servers.rst, "Unregistering objects": ``Daemon.unregister(objectOrId)`` with the object or its id.

Self-contained: the daemon serves from a background thread, the main thread is the client.
"""

import threading

import pyroplug as Pyro4


class Thing(object):
    def method(self, arg):
        return arg*2


daemon = Pyro4.Daemon(host="127.0.0.1")
thing, other = Thing(), Thing()
uri = daemon.register(thing)
other_uri = daemon.register(other, "example.other")
server = threading.Thread(target=daemon.requestLoop)
server.start()

with Pyro4.Proxy(uri) as proxy:
    print("before unregister:", proxy.method(21))
daemon.unregister(thing)                 # by the object itself
daemon.unregister("example.other")       # or by its id string
print("registered now:", daemon.objectsById.keys() - {Pyro4.constants.DAEMON_NAME} or "nothing")
for gone in (uri, other_uri):
    try:
        with Pyro4.Proxy(gone) as proxy:
            proxy.method(21)
    except Pyro4.errors.CommunicationError as x:
        print("after unregister:", x)

daemon.shutdown()
server.join()
