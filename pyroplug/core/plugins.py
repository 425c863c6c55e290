"""The plugin manager: builtins and entry-point plugins registered through one path."""

from __future__ import annotations

import importlib
import os
import threading

import pluggy

from pyroplug.core import hookspec
from pyroplug.core.errors import PluginError

__all__ = [
    "BUILTIN_PLUGINS",
    "describe_plugins",
    "get_plugin_manager",
    "make_plugin_manager",
    "reset_plugins",
]

#: the builtin plugins, registered under these dotted names exactly like entry points are
BUILTIN_PLUGINS: tuple[str, ...] = (
    "pyroplug.plugins.serializers.serpent",
    "pyroplug.plugins.serializers.json",
    "pyroplug.plugins.serializers.marshal",
    "pyroplug.plugins.serializers.pickle",
    "pyroplug.plugins.serializers.dill",
    "pyroplug.plugins.serializers.msgpack",
    "pyroplug.plugins.servers.thread",
    "pyroplug.plugins.servers.multiplex",
    "pyroplug.plugins.transports.tcp",
    "pyroplug.plugins.transports.unix",
    "pyroplug.naming.storages.memory",
    "pyroplug.naming.storages.sql",
    "pyroplug.naming.storages.dbm",
)

_lock = threading.Lock()
_manager: pluggy.PluginManager | None = None


def make_plugin_manager(
    disabled: str | None = None,
    autoload: bool | None = None,
    builtins: tuple[str, ...] = BUILTIN_PLUGINS,
) -> pluggy.PluginManager:
    """Build a plugin manager: specs, blocked names, builtins, entry points, then a spec check.

    ``disabled`` is a comma separated list of plugin names to block (default ``PYRO_PLUGINS_DISABLE``);
    a builtin's name is its dotted module name, an entry point's name is the entry point's name.
    ``autoload`` loads the ``pyroplug`` entry points (default: unless ``PYRO_PLUGINS_AUTOLOAD=0``).
    A blocked builtin is not even imported. A hook implementation whose name or arguments match no
    spec (a misspelling) raises PluginError naming the plugin.
    """
    pm = pluggy.PluginManager(hookspec.NAME)
    pm.add_hookspecs(hookspec)
    if disabled is None:
        disabled = os.environ.get("PYRO_PLUGINS_DISABLE", "")
    for name in disabled.split(","):
        if name.strip():
            pm.set_blocked(name.strip())
    for dotted in builtins:
        if not pm.is_blocked(dotted):
            register_module(pm, importlib.import_module(dotted), dotted)
    if autoload is None:
        autoload = os.environ.get("PYRO_PLUGINS_AUTOLOAD", "1").strip().lower() not in ("0", "no", "false", "off")
    if autoload:
        pm.load_setuptools_entrypoints(hookspec.NAME)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {exc.plugin!r}: {exc}") from exc
    return pm


def register_module(pm: pluggy.PluginManager, plugin: object, name: str) -> None:
    """Register one plugin object under ``name``: the same call used for entry points.

    Raises PluginError when a hook implementation does not fit its spec (e.g. wrong argument names).
    """
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {name!r}: {exc}") from exc


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, built on first use (never at ``import pyroplug``)."""
    global _manager
    if _manager is None:
        with _lock:
            if _manager is None:
                _manager = make_plugin_manager()
    return _manager


def reset_plugins(pm: pluggy.PluginManager | None = None) -> None:
    """Replace the process-wide plugin manager (None: rebuild lazily) and drop the cached registry."""
    global _manager
    from pyroplug.core import registry

    with _lock:
        _manager = pm
    registry.invalidate()


def describe_plugins(pm: pluggy.PluginManager | None = None) -> list[str]:
    """One line per registered plugin: its name, distribution and version, and what it provides."""
    from pyroplug.core.registry import Registry

    pm = pm or get_plugin_manager()
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    reg = Registry.build(pm)
    lines = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda np: np[0]):
        if plugin is None:
            continue
        dist = dists.get(id(plugin))
        origin = f"{dist.project_name} {dist.version}" if dist else "pyroplug (builtin)"
        provides = reg.provided_by(plugin)
        lines.append(f"{name} [{origin}]: {provides or 'nothing available'}")
    return lines

