"""Fixtures of the security tests: a throwaway PKI (generated once per session) and both server types."""

from __future__ import annotations

import pytest

from pyroplug.testing.certs import PKI, CertificateToolMissing, make_pki
from tests.security.support import SERVERTYPES


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    """CA, server, client and rogue certificates in a session tmp dir (see pyroplug.testing.certs)."""
    try:
        return make_pki(tmp_path_factory.mktemp("pki"))
    except CertificateToolMissing as exc:
        pytest.skip(str(exc))


@pytest.fixture(params=SERVERTYPES)
def servertype(request: pytest.FixtureRequest) -> str:
    """Each server type in turn."""
    return str(request.param)
