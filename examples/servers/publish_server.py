"""servers.rst, "Pyro Daemon: publishing Pyro objects": the most basic server.

The chapter's code; MyPyroThing got one method so that there is something to call
(run ``thing_client.py URI``). The daemon binds the configured HOST (localhost by default;
PYRO_HOST=127.0.0.1 in the environment overrides it).
"""

import pyroplug as Pyro4


class MyPyroThing(object):
    # ... methods that can be called go here...
    def hello(self, name):
        return f"hello {name}, from {type(self).__name__}"


thing = MyPyroThing()
daemon = Pyro4.Daemon()
uri = daemon.register(thing)
print(uri)
daemon.requestLoop()
