"""Builtin serializer plugins: serpent, json, marshal, pickle, dill, msgpack."""
