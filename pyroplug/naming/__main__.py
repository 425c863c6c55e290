"""``python -m pyroplug.naming``: run a name server (the ``pyroplug-ns`` tool)."""

from __future__ import annotations

import sys

from pyroplug.naming.ns import main

sys.exit(main())
