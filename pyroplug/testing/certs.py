"""Throwaway certificates for TLS tests, generated with the ``openssl`` command-line tool.

:func:`make_pki` writes into a directory (a test's tmp dir) a small public-key infrastructure:

- ``ca``: a self-signed certificate authority, also copied into a hashed CA directory (``capath``)
  usable as ``SSL_CACERTS`` (OpenSSL's ``<subject hash>.0`` naming);
- ``server``: signed by ``ca`` for ``localhost``, ``127.0.0.1`` and ``::1`` (serverAuth), with a
  plain key and the same key encrypted with :attr:`PKI.password`;
- ``client``: signed by ``ca`` (clientAuth), common name ``pyroplug test client``, also with an
  encrypted copy of its key;
- ``rogue_ca`` with ``rogue_server`` and ``rogue_client``: the same shapes from an untrusted CA;
- ``wrong_host_server``: signed by ``ca`` but only for ``elsewhere.invalid``.

Keys are P-256 EC keys (fast to make); certificates are valid from now for a day or two. Nothing
here is a secret of any real host. Raises :class:`CertificateToolMissing` when
``openssl`` is not installed, so tests can skip with a clear reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PKI", "CertPair", "CertificateToolMissing", "make_pki", "openssl_available"]

#: the password of the encrypted copy of the server key
KEY_PASSWORD = "pyroplug-test-password"


class CertificateToolMissing(RuntimeError):
    """The ``openssl`` command is not available on this machine."""


@dataclass(frozen=True)
class CertPair:
    """A certificate and its private key (PEM files)."""

    cert: str
    key: str


@dataclass(frozen=True)
class PKI:
    """The generated files (all paths are strings, ready for the SSL_* config items)."""

    directory: str
    ca: CertPair
    capath: str
    server: CertPair
    server_key_encrypted: str
    password: str
    client: CertPair
    client_key_encrypted: str
    rogue_ca: CertPair
    rogue_server: CertPair
    rogue_client: CertPair
    wrong_host_server: CertPair


def openssl_available() -> bool:
    """True when the ``openssl`` command can be run."""
    return shutil.which("openssl") is not None


def _openssl(*args: str, cwd: Path) -> str:
    try:
        done = subprocess.run(
            ["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        raise CertificateToolMissing("the openssl command is needed to generate test certificates") from exc
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def _key(directory: Path, name: str) -> str:
    path = directory / f"{name}.key"
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path), cwd=directory)
    os.chmod(path, 0o600)
    return str(path)


def _ca(directory: Path, name: str, common_name: str) -> CertPair:
    key = _key(directory, name)
    cert = directory / f"{name}.pem"
    _openssl(
        "req", "-x509", "-new", "-key", key, "-out", str(cert), "-days", "2", "-subj", f"/CN={common_name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-addext", "subjectKeyIdentifier=hash",
        cwd=directory,
    )
    return CertPair(str(cert), key)


def _leaf(directory: Path, name: str, issuer: CertPair, common_name: str, extensions: list[str]) -> CertPair:
    key = _key(directory, name)
    csr = directory / f"{name}.csr"
    cert = directory / f"{name}.pem"
    ext = directory / f"{name}.ext"
    ext.write_text(
        "\n".join(
            [
                "basicConstraints=critical,CA:FALSE",
                "subjectKeyIdentifier=hash",
                "authorityKeyIdentifier=keyid,issuer",
                *extensions,
            ]
        )
        + "\n"
    )
    _openssl("req", "-new", "-key", key, "-out", str(csr), "-subj", f"/CN={common_name}", cwd=directory)
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", issuer.cert, "-CAkey", issuer.key, "-CAcreateserial",
        "-out", str(cert), "-days", "1", "-extfile", str(ext), cwd=directory,
    )
    csr.unlink()
    ext.unlink()
    return CertPair(str(cert), key)


_SERVER_EXT = [
    "keyUsage=critical,digitalSignature,keyAgreement",
    "extendedKeyUsage=serverAuth",
    "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1",
]
_CLIENT_EXT = ["keyUsage=critical,digitalSignature,keyAgreement", "extendedKeyUsage=clientAuth"]


def make_pki(directory: str | os.PathLike[str]) -> PKI:
    """Generate the certificates described in the module docstring into ``directory`` (created if needed)."""
    if not openssl_available():
        raise CertificateToolMissing("the openssl command is needed to generate test certificates")
    base = Path(directory).resolve()
    base.mkdir(parents=True, exist_ok=True)
    ca = _ca(base, "ca", "pyroplug test CA")
    server = _leaf(base, "server", ca, "localhost", _SERVER_EXT)
    encrypted = base / "server-encrypted.key"
    _openssl("pkey", "-in", server.key, "-aes256", "-passout", f"pass:{KEY_PASSWORD}", "-out", str(encrypted), cwd=base)
    client = _leaf(base, "client", ca, "pyroplug test client", _CLIENT_EXT)
    client_encrypted = base / "client-encrypted.key"
    _openssl("pkey", "-in", client.key, "-aes256", "-passout", f"pass:{KEY_PASSWORD}", "-out", str(client_encrypted),
             cwd=base)
    rogue_ca = _ca(base, "rogue-ca", "rogue test CA")
    rogue_server = _leaf(base, "rogue-server", rogue_ca, "localhost", _SERVER_EXT)
    rogue_client = _leaf(base, "rogue-client", rogue_ca, "rogue test client", _CLIENT_EXT)
    wrong_host = _leaf(
        base, "wrong-host-server", ca, "elsewhere.invalid",
        [*_SERVER_EXT[:2], "subjectAltName=DNS:elsewhere.invalid"],
    )
    capath = base / "capath"
    capath.mkdir(exist_ok=True)
    subject_hash = _openssl("x509", "-hash", "-noout", "-in", ca.cert, cwd=base).strip()
    shutil.copyfile(ca.cert, capath / f"{subject_hash}.0")
    return PKI(
        directory=str(base), ca=ca, capath=str(capath), server=server, server_key_encrypted=str(encrypted),
        password=KEY_PASSWORD, client=client, client_key_encrypted=str(client_encrypted), rogue_ca=rogue_ca, rogue_server=rogue_server,
        rogue_client=rogue_client, wrong_host_server=wrong_host,
    )
