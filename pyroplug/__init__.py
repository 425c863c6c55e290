"""pyroplug: remote objects for Python, Pyro4 4.82 compatible, on a minimal pluggy kernel.

``import pyroplug as Pyro4`` runs ordinary Pyro4 code. No plugin is loaded at import time: the
plugin manager is built on first use (the first Daemon, Proxy or serializer lookup).
"""

from __future__ import annotations

import logging

from pyroplug.core import constants, errors
from pyroplug.core.config import config
from pyroplug.core.constants import PYROPLUG_VERSION, VERSION
from pyroplug.core.uri import URI

__version__ = PYROPLUG_VERSION

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = sorted(
    [
        "PYROPLUG_VERSION",
        "URI",
        "VERSION",
        "config",
        "constants",
        "errors",
    ]
)
