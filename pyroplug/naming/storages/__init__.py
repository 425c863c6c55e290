"""The builtin name-server storages: memory, sql (SQLite) and dbm; one class and one hookimpl per module."""
