"""Protocol and naming constants shared with Pyro4 4.82."""

from __future__ import annotations

#: the Pyro4 version whose wire protocol and API pyroplug speaks
VERSION = "4.82"
#: pyroplug's own version
PYROPLUG_VERSION = "0.1.0"
DAEMON_NAME = "Pyro.Daemon"
NAMESERVER_NAME = "Pyro.NameServer"
FLAME_NAME = "Pyro.Flame"
PROTOCOL_VERSION = 48
