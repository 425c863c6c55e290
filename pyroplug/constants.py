"""Pyro4's constants (``Pyro4.constants``)."""

from pyroplug.core.constants import (
    DAEMON_NAME,
    FLAME_NAME,
    NAMESERVER_NAME,
    PROTOCOL_VERSION,
    PYROPLUG_VERSION,
    VERSION,
)

__all__ = [
    "DAEMON_NAME",
    "FLAME_NAME",
    "NAMESERVER_NAME",
    "PROTOCOL_VERSION",
    "PYROPLUG_VERSION",
    "VERSION",
]
