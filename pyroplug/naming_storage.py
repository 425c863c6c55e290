"""Pyro4's ``naming_storage`` module names: the builtin name-server storages."""

from pyroplug.naming.storages.dbm import DbmStorage
from pyroplug.naming.storages.memory import MemoryStorage
from pyroplug.naming.storages.sql import SqlStorage

__all__ = ["DbmStorage", "MemoryStorage", "SqlStorage"]
