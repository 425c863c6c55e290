"""Builtin plugins, each registered exactly like a third-party entry point."""
