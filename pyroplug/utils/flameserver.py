"""Pyro4's ``Pyro4.utils.flameserver``: the same module as :mod:`pyroplug.tools.flameserver`."""

import sys

from pyroplug.tools import flameserver as _module

sys.modules[__name__] = _module
