"""Pyro4's exception classes (``Pyro4.errors``), plus PluginError."""

from pyroplug.core.errors import (
    CommunicationError,
    ConnectionClosedError,
    DaemonError,
    MessageTooLargeError,
    NamingError,
    PluginError,
    ProtocolError,
    PyroError,
    SecurityError,
    SerializeError,
    TimeoutError,
)

__all__ = [
    "CommunicationError",
    "ConnectionClosedError",
    "DaemonError",
    "MessageTooLargeError",
    "NamingError",
    "PluginError",
    "ProtocolError",
    "PyroError",
    "SecurityError",
    "SerializeError",
    "TimeoutError",
]
