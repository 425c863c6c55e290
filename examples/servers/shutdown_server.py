"""servers.rst, "Cleaning up": leave the request loop with ``Daemon.shutdown()``, then clean up.

A remote ``stop()`` calls ``shutdown()`` on the running daemon (reached through the object's
``_pyroDaemon``); requestLoop returns and the script closes the daemon. Run ``stop_client.py URI``.
"""

import pyroplug as Pyro4


@Pyro4.expose
class Service(object):
    def method(self, arg):
        return arg*2

    @Pyro4.oneway
    def stop(self):
        self._pyroDaemon.shutdown()


daemon = Pyro4.Daemon(host="127.0.0.1")
uri = daemon.register(Service)
print(uri)
daemon.requestLoop()
print("request loop ended after shutdown()")
daemon.close()
print("daemon closed")
