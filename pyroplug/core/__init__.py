"""The pyroplug kernel: hook specs, plugin registry, config, wire protocol and the remote-object model.

Pyro4 code that uses ``Pyro4.core.X`` finds the same names here (``pyroplug.core.Proxy`` ...); they
are imported on first access so that importing the kernel stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "URI": "pyroplug.core.uri",
    "Proxy": "pyroplug.core.proxy",
    "Daemon": "pyroplug.core.daemon",
    "DaemonObject": "pyroplug.core.daemonobject",
    "expose": "pyroplug.core.expose",
    "oneway": "pyroplug.core.expose",
    "behavior": "pyroplug.core.expose",
    "callback": "pyroplug.core.expose",
    "current_context": "pyroplug.core.context",
    "SerializedBlob": "pyroplug.core.blob",
    "batch": "pyroplug.core.batch",
    "asyncproxy": "pyroplug.core.asyncproxy",
    "locateNS": "pyroplug.core.nsclient",
    "resolve": "pyroplug.core.nsclient",
    "_locateNS": ("pyroplug.core.nsclient", "locateNS"),
    "_resolve": ("pyroplug.core.nsclient", "resolve"),
}


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'pyroplug.core' has no attribute {name!r}")
    module, attr = target if isinstance(target, tuple) else (target, name)
    return getattr(importlib.import_module(module), attr)
