"""servers.rst, "Daemon Pyro interface": the daemon's own "Pyro.Daemon" object, via Pyro4.constants.DAEMON_NAME.

The chapter talks to a running name server's daemon at localhost:9090; here the location is taken
from the NS_HOST / NS_PORT config items (PYRO_NS_HOST / PYRO_NS_PORT), or from the first argument.
"""

import sys

import pyroplug as Pyro4

location = sys.argv[1] if len(sys.argv) > 1 else "%s:%d" % (Pyro4.config.NS_HOST, Pyro4.config.NS_PORT)  # noqa: UP031
daemon=Pyro4.Proxy("PYRO:"+Pyro4.constants.DAEMON_NAME+"@"+location)
print("ping():", daemon.ping())
print("registered():", daemon.registered())
print("info():", daemon.info())
