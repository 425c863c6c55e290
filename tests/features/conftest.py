"""Fixtures of the feature tests (helpers are in support.py)."""

from __future__ import annotations

import pytest

from tests.features.support import SERVERTYPES


@pytest.fixture(params=SERVERTYPES)
def servertype(request: pytest.FixtureRequest) -> str:
    """Each test taking it runs under the thread and the multiplex server type."""
    return str(request.param)
