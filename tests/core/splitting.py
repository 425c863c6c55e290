"""Helpers for the split-receive tests."""

from __future__ import annotations

import random

from pyroplug.core import protocol
from pyroplug.core.protocol import MessageReader


def read_in_pieces(wire: bytes, seed: int, reader: MessageReader | None = None) -> list[protocol.Message]:
    """Drive a reader like a socket loop (get_buffer, a random partial fill, buffer_updated)."""
    reader = reader or MessageReader()
    rnd = random.Random(seed)
    out = []
    pos = 0
    while pos < len(wire):
        buf = reader.get_buffer()
        n = min(len(buf), rnd.choice([1, 7, 100, 5000, 70_000, 1 << 20]), len(wire) - pos)
        buf[:n] = wire[pos : pos + n]
        buf.release()
        pos += n
        reader.buffer_updated(n)
        while (msg := reader.next_message()) is not None:
            out.append(msg)
    assert reader.idle
    return out
