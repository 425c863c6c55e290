"""Pyro4's util module names (``Pyro4.util``): tracebacks, serializer access, exposure helpers."""

from __future__ import annotations

from pyroplug.core.config import Config
from pyroplug.core.config import config as _config
from pyroplug.core.expose import (
    get_exposed_members,
    get_exposed_property_value,
    getAttribute,
    is_private_attribute,
    reset_exposed_members,
    set_exposed_property_value,
)
from pyroplug.core.serializer import Serializer
from pyroplug.core.tracebacks import excepthook, formatTraceback, getPyroTraceback

#: Pyro4's name of the serializer base class
SerializerBase = Serializer

__all__ = [
    "SerializerBase",
    "excepthook",
    "formatTraceback",
    "getAttribute",
    "getPyroTraceback",
    "get_exposed_members",
    "get_exposed_property_value",
    "get_serializer",
    "get_serializer_by_id",
    "is_private_attribute",
    "reset_exposed_members",
    "set_exposed_property_value",
]


def get_serializer(name: str, config: Config | None = None) -> Serializer:
    """A serializer instance by name (PluginError lists the available ones)."""
    from pyroplug.core.registry import get_registry

    return get_registry().serializer(name)(config or _config)


def get_serializer_by_id(serializer_id: int, config: Config | None = None) -> Serializer:
    """A serializer instance by wire id."""
    from pyroplug.core.registry import get_registry

    return get_registry().serializer_by_id(serializer_id)(config or _config)
