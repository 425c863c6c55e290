"""The name server (Pyro4's ``Pyro4.naming``): NameServer, its daemon, storages, discovery and resolution.

An application built on the kernel: the name server is an ordinary exposed object in an ordinary
Daemon. Storages are plugins (hook ``pyroplug_ns_storages``); the builtins are ``memory``,
``sql:<file>`` and ``dbm:<file>``. ``python -m pyroplug.naming`` runs ``pyroplug-ns``.
"""

from __future__ import annotations

from pyroplug.core.nsclient import locateNS, resolve
from pyroplug.naming.autoclean import AutoCleaner
from pyroplug.naming.broadcast import BroadcastServer
from pyroplug.naming.nameserver import NameServer, type_meta
from pyroplug.naming.server import NameServerDaemon, make_storage, startNS, startNSloop
from pyroplug.naming.storage import Storage
from pyroplug.naming.storages.memory import MemoryStorage

__all__ = [
    "AutoCleaner",
    "BroadcastServer",
    "MemoryStorage",
    "NameServer",
    "NameServerDaemon",
    "Storage",
    "locateNS",
    "make_storage",
    "resolve",
    "startNS",
    "startNSloop",
    "type_meta",
]
