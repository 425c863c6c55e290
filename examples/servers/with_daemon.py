"""servers.rst, "Cleaning up": the daemon as a context manager, ``with Pyro4.Daemon() as daemon:``.

Leaving the with block closes the daemon (its listening socket and connections). A remote ``stop()``
ends the request loop. Run ``stop_client.py URI``.
"""

import pyroplug as Pyro4


@Pyro4.expose
class Service(object):
    def method(self, arg):
        return arg*2

    @Pyro4.oneway
    def stop(self):
        self._pyroDaemon.shutdown()


with Pyro4.Daemon(host="127.0.0.1") as daemon:
    uri = daemon.register(Service)
    print(uri)
    daemon.requestLoop()
print("with block left; listening socket closed:", daemon.sock.fileno() == -1)
try:
    daemon.requestLoop()
except Pyro4.errors.PyroError as x:
    print("the closed daemon can't be used again:", x)
