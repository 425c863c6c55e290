"""Pyro4's ``Pyro4.utils.httpgateway``: the same module as :mod:`pyroplug.tools.httpgateway`."""

import sys

from pyroplug.tools import httpgateway as _module

sys.modules[__name__] = _module
