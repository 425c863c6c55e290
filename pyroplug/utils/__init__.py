"""Pyro4's ``Pyro4.utils`` package names: ``flame``, ``flameserver`` and ``httpgateway`` (in pyroplug.tools)."""
