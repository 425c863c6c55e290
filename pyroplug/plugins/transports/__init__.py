"""Builtin transport plugins: tcp (IPv4/IPv6) and unix sockets."""
