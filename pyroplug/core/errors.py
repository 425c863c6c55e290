"""Pyro4's exception hierarchy (same names, same tree) plus PluginError.

::

    PyroError(Exception)
     +-- CommunicationError
     |    +-- ConnectionClosedError
     |    +-- TimeoutError
     |    +-- ProtocolError
     |         +-- MessageTooLargeError
     |         +-- SerializeError
     +-- NamingError
     +-- DaemonError
     +-- SecurityError
     +-- PluginError

On the wire these travel as ``Pyro4.errors.<Name>`` so stock Pyro4 peers rebuild them.
"""

from __future__ import annotations

import builtins

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


class PyroError(Exception):
    """Generic base of all pyroplug errors."""


class CommunicationError(PyroError):
    """Base class for errors related to network communication."""


class ConnectionClosedError(CommunicationError):
    """The connection was unexpectedly closed."""


class TimeoutError(CommunicationError):  # noqa: A001 - Pyro4's name, shadows the builtin on purpose
    """A network operation timed out."""


class ProtocolError(CommunicationError):
    """Pyro received a message that violates its protocol rules."""


class MessageTooLargeError(ProtocolError):
    """A message exceeded MAX_MESSAGE_SIZE."""


class SerializeError(ProtocolError):
    """A problem while serializing or deserializing data."""


class NamingError(PyroError):
    """A problem with the name server or a name lookup."""


class DaemonError(PyroError):
    """The daemon encountered a problem (unknown object, duplicate registration, ...)."""


class SecurityError(PyroError):
    """A security related error (hmac mismatch, refused class, ...)."""


class PluginError(PyroError):
    """A plugin is missing, duplicated or misbehaves."""


#: every error class by its short name, used to rebuild ``Pyro4.errors.X`` / ``pyroplug.errors.X`` tags
ERRORS_BY_NAME: dict[str, type[PyroError]] = {
    cls.__name__: cls
    for cls in (
        PyroError,
        CommunicationError,
        ConnectionClosedError,
        TimeoutError,
        ProtocolError,
        MessageTooLargeError,
        SerializeError,
        NamingError,
        DaemonError,
        SecurityError,
        PluginError,
    )
}

# The builtin TimeoutError stays reachable for code that needs it.
BuiltinTimeoutError = builtins.TimeoutError
