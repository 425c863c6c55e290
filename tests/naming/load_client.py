"""A load-test client process: register COUNT names under a prefix, then look every one up.

Usage: python load_client.py NS_URI CLIENT_ID COUNT START_AT  (START_AT: a time.time() to start at).
Prints "OK <registered> <looked up>" or exits 1 with the error.
"""

from __future__ import annotations

import sys
import time

from pyroplug.core.proxy import Proxy


def main(argv: list[str]) -> int:
    uri, client, count, start_at = argv[0], int(argv[1]), int(argv[2]), float(argv[3])
    with Proxy(uri) as ns:
        ns._pyroBind()
        delay = start_at - time.time()
        if delay > 0:
            time.sleep(delay)
        for i in range(count):
            ns.register(f"load.c{client}.n{i}", f"PYRO:o{client}x{i}@127.0.0.1:{1000 + i}", safe=True,
                        metadata={f"client{client}", "load"} if i % 10 == 0 else None)
        found = 0
        for i in range(count):
            if str(ns.lookup(f"load.c{client}.n{i}")) == f"PYRO:o{client}x{i}@127.0.0.1:{1000 + i}":
                found += 1
    print(f"OK {count} {found}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
