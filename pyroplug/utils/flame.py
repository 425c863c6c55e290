"""Pyro4's ``Pyro4.utils.flame``: the same module as :mod:`pyroplug.tools.flame`."""

import sys

from pyroplug.tools import flame as _module

sys.modules[__name__] = _module
