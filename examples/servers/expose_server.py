"""servers.rst, "Creating a Pyro class and using the Pyro4 decorators": the partially exposed PyroService.

The class is the chapter's. To make it runnable the daemon publishes the class on 127.0.0.1 and
prints its URI; run ``expose_client.py URI`` to see what is (and is not) remotely reachable.
"""

import pyroplug as Pyro4

Pyro4.config.REQUIRE_EXPOSE = True      # make @expose do something


class PyroService(object):

    value = 42                  # not exposed

    def __dunder__(self):       # exposed
        pass

    def _private(self):         # not exposed
        pass

    def __private(self):        # not exposed
        pass

    @Pyro4.expose
    def get_value(self):        # exposed
        return self.value

    @Pyro4.expose
    @property
    def attr(self):             # exposed as 'proxy.attr' remote attribute
        return self.value

    @Pyro4.expose
    @attr.setter
    def attr(self, value):      # exposed as 'proxy.attr' writable
        self.value = value


daemon = Pyro4.Daemon(host="127.0.0.1")
uri = daemon.register(PyroService)
print(uri)
daemon.requestLoop()
