"""pyroplug: remote objects for Python, Pyro4 4.82 compatible, on a minimal pluggy kernel.

``import pyroplug as Pyro4`` runs ordinary Pyro4 code. No plugin is loaded at import time: the
plugin manager is built on first use (the first Daemon, Proxy or serializer lookup).
"""

from __future__ import annotations

import logging
import os

from pyroplug import constants, errors, futures, message, socketutil, util
from pyroplug.core.asyncproxy import asyncproxy
from pyroplug.core.batch import batch
from pyroplug.core.blob import SerializedBlob
from pyroplug.core.config import config
from pyroplug.core.constants import PYROPLUG_VERSION, VERSION
from pyroplug.core.context import current_context
from pyroplug.core.daemon import Daemon, DaemonObject
from pyroplug.core.expose import behavior, callback, expose, oneway
from pyroplug.core.futures import Future, FutureResult
from pyroplug.core.nsclient import locateNS, resolve
from pyroplug.core.proxy import Proxy
from pyroplug.core.serializer import (
    register_class_to_dict,
    register_dict_to_class,
    unregister_class_to_dict,
    unregister_dict_to_class,
)
from pyroplug.core.uri import URI

__version__ = PYROPLUG_VERSION

__all__ = [
    "Daemon",
    "DaemonObject",
    "Future",
    "FutureResult",
    "PYROPLUG_VERSION",
    "Proxy",
    "SerializedBlob",
    "URI",
    "VERSION",
    "asyncproxy",
    "batch",
    "behavior",
    "callback",
    "config",
    "constants",
    "current_context",
    "errors",
    "expose",
    "futures",
    "locateNS",
    "message",
    "oneway",
    "register_class_to_dict",
    "register_dict_to_class",
    "resolve",
    "socketutil",
    "unregister_class_to_dict",
    "unregister_dict_to_class",
    "util",
]


def __getattr__(name: str) -> object:
    """Pyro4's submodules reachable as attributes (``Pyro4.naming``), imported on first use."""
    if name in ("naming", "naming_storage", "nsc", "core", "plugin", "utils"):
        import importlib

        return importlib.import_module(f"pyroplug.{name}")
    raise AttributeError(f"module 'pyroplug' has no attribute {name!r}")


def _configure_logging() -> None:
    """Pyro4's rule: configure logging only when PYRO_LOGLEVEL is set (PYRO_LOGFILE, '{stderr}')."""
    logger = logging.getLogger(__name__)
    logger.addHandler(logging.NullHandler())
    level = os.environ.get("PYRO_LOGLEVEL")
    if not level:
        return
    logfile = os.environ.get("PYRO_LOGFILE", "pyro.log")
    handler: logging.Handler = logging.StreamHandler() if logfile == "{stderr}" else logging.FileHandler(logfile)
    handler.setFormatter(logging.Formatter("[%(asctime)s.%(msecs)03d,%(name)s,%(levelname)s] %(message)s", "%Y-%m-%d %H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(level.upper())


_configure_logging()
