"""servers.rst, "Oneliner Pyro object publishing: serveSimple()", with ns=False.

The chapter's code (MyPyroThing got one method, see publish_server.py). serveSimple prints the URI
of each object; run ``thing_client.py URI URI``.
"""

import pyroplug as Pyro4


class MyPyroThing(object):
    def hello(self, name):
        return f"hello {name}, from {type(self).__name__}"


obj = MyPyroThing()
Pyro4.Daemon.serveSimple(
    {
        MyPyroThing: None,    # register the class
        obj: None             # register one specific instance
    },
    ns=False)
