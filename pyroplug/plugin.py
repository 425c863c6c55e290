"""What plugin authors import: the hookimpl marker, the plugin base classes, Config and PluginError."""

from __future__ import annotations

from pyroplug.core.config import Config
from pyroplug.core.errors import PluginError
from pyroplug.core.hookspec import NAME, hookimpl
from pyroplug.core.protocol import Message, MessageReader
from pyroplug.core.serializer import (
    Serializer,
    check_call,
    class_to_dict,
    dict_to_class,
    recreate_classes,
    wrap_error,
)
from pyroplug.core.servertype import RequestHandler, ServerType
from pyroplug.core.storage import Storage
from pyroplug.core.transport import (
    Connection,
    FamilyName,
    Listener,
    SocketConnection,
    SocketListener,
    Transport,
    map_oserror,
)

__all__ = [
    "Config",
    "Connection",
    "FamilyName",
    "Listener",
    "Message",
    "MessageReader",
    "NAME",
    "PluginError",
    "RequestHandler",
    "Serializer",
    "ServerType",
    "SocketConnection",
    "SocketListener",
    "Storage",
    "Transport",
    "check_call",
    "class_to_dict",
    "dict_to_class",
    "hookimpl",
    "map_oserror",
    "recreate_classes",
    "wrap_error",
]
