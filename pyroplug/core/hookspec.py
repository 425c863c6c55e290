"""Every pyroplug hook specification, and the markers plugins use to implement them.

A plugin is any module or object with functions marked ``@hookimpl`` whose names match a spec below.
Builtins and third-party plugins are registered the same way: third parties through the entry-point
group named :data:`NAME` (``[project.entry-points.pyroplug]`` in their ``pyproject.toml``).

Every hook here is called once per registry build (at first use, and again after plugins change),
never on the per-call path. Each returns a sequence of classes that carry their own keys as
class variables; the kernel builds the lookup maps and refuses duplicates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from pyroplug.core.serializer import Serializer
    from pyroplug.core.servertype import ServerType
    from pyroplug.core.storage import Storage
    from pyroplug.core.transport import Transport

#: project name of the markers AND the entry-point group plugins are loaded from
NAME = "pyroplug"

hookspec = pluggy.HookspecMarker(NAME)
hookimpl = pluggy.HookimplMarker(NAME)


@hookspec
def pyroplug_serializers() -> Sequence[type[Serializer]]:  # type: ignore[empty-body]
    """Return the serializer classes this plugin provides.

    Called once per registry build. Each class subclasses :class:`pyroplug.plugin.Serializer` and sets
    ``name`` (the string used in ``SERIALIZER`` / ``SERIALIZERS_ACCEPTED``) and ``serializer_id``
    (the wire id: Pyro4's 1-7 for the builtins, 32-255 for third parties). A plugin whose optional
    dependency is missing returns an empty sequence.
    """


@hookspec
def pyroplug_server_types() -> Sequence[type[ServerType]]:  # type: ignore[empty-body]
    """Return the server-type classes this plugin provides.

    Called once per registry build. Each class subclasses :class:`pyroplug.plugin.ServerType` and sets
    ``name`` (the value of ``SERVERTYPE`` that selects it, e.g. ``"thread"``).
    """


@hookspec
def pyroplug_transports() -> Sequence[type[Transport]]:  # type: ignore[empty-body]
    """Return the transport classes this plugin provides.

    Called once per registry build. Each class subclasses :class:`pyroplug.plugin.Transport` and sets
    ``location_kind``: ``"tcp"`` for ``host:port`` locations, or the ``KIND`` of ``./KIND:address``
    locations (``"u"`` is the unix socket transport).
    """


@hookspec
def pyroplug_ns_storages() -> Sequence[type[Storage]]:  # type: ignore[empty-body]
    """Return the name-server storage classes this plugin provides.

    Called once per registry build. Each class subclasses :class:`pyroplug.naming.storage.Storage` and
    sets ``scheme``: the part before the first ``:`` of the storage string that selects it (the name
    server's ``-s/--storage`` option, e.g. ``memory``, ``sql:/var/ns.sqlite``, ``dbm:ns.dbm``). A plugin
    whose optional dependency is missing returns an empty sequence.
    """
