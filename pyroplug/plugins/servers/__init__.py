"""Builtin server-type plugins: thread and multiplex."""
