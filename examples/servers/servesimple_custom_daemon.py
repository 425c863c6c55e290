"""servers.rst, serveSimple with your own daemon (``daemon=custom_daemon``).

The chapter's host/nathost "example" are replaced by 127.0.0.1 (bind) and localhost (published):
the printed URI names localhost. ns is left at its default (True), so a name server must be
running (PYRO_NS_HOST / PYRO_NS_PORT say where); the object has no name, so it is not registered
there. Run ``thing_client.py URI``.
"""

import pyroplug as Pyro4


class MyPyroThing(object):
    def hello(self, name):
        return f"hello {name}, from {type(self).__name__}"


custom_daemon = Pyro4.Daemon(host="127.0.0.1", nathost="localhost")    # some additional custom configuration
Pyro4.Daemon.serveSimple(
    {
        MyPyroThing(): None
    },
    daemon = custom_daemon)
