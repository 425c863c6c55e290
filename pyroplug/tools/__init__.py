"""Command-line tools and their shared helpers (the echo server; the name-server tools live in pyroplug.naming)."""
