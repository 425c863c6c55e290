"""Pyro4's ``Pyro4.nsc``: the same module as :mod:`pyroplug.naming.nsc` (the ``pyroplug-nsc`` tool)."""

import sys

from pyroplug.naming import nsc as _module

sys.modules[__name__] = _module
