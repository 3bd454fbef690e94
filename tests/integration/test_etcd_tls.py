"""etcd over TLS with client certificates and a user: the settings' files are read, the member's
certificate is checked against the CA, and the wrong CA or no client certificate is refused."""

from __future__ import annotations

import datetime
import ipaddress
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from adapters.etcd import TlsMaterial, connect_etcd
from adapters.factories.etcd import open_etcd
from connector_core.errors import Unavailable
from entrypoints.settings import load_settings
from tests import servers
from tests.servers import ServerProcess, port_open

pytestmark = [pytest.mark.etcd, pytest.mark.slow]

PASSWORD = "tls-app-" + uuid.uuid4().hex[:8]


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
    )
    if issuer is None:  # the CA
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        ).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def write_pki(directory: Path) -> dict[str, Path]:
    """A throwaway CA, a member certificate (127.0.0.1) and a client certificate, as PEM files."""
    ca_key = _key()
    ca = _cert("test etcd CA", ca_key, None)
    files: dict[str, Path] = {}
    for name, (cert, key) in {
        "ca": (ca, ca_key),
        "server": (lambda k: (_cert("etcd member", k, (ca, ca_key)), k))(_key()),
        "client": (lambda k: (_cert("connector-manager", k, (ca, ca_key)), k))(_key()),
        "other-ca": (lambda k: (_cert("another CA", k, None), k))(_key()),
    }.items():
        files[name] = directory / f"{name}.pem"
        files[name].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files[f"{name}-key"] = directory / f"{name}-key.pem"
        files[f"{name}-key"].write_bytes(_pem_key(key))
    return files


@pytest.fixture(scope="module")
def member(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, dict[str, Path]]]:
    pki = write_pki(tmp_path_factory.mktemp("pki"))
    tls = ["--cert-file", str(pki["server"]), "--key-file", str(pki["server-key"]),
           "--trusted-ca-file", str(pki["ca"]), "--client-cert-auth"]  # fmt: skip
    server = servers.etcd(name="tls", scheme="https", extra=tls, ready=port_open)
    server.start()
    try:
        endpoint = f"https://127.0.0.1:{server.port}"
        client_tls = ["--cacert", str(pki["ca"]), "--cert", str(pki["client"]), "--key", str(pki["client-key"])]
        for args in (
            ["user", "add", "root:root-" + PASSWORD],
            ["user", "add", f"app:{PASSWORD}"],
            ["role", "add", "app"],
            ["role", "grant-permission", "app", "--prefix=true", "readwrite", "/services/"],
            ["user", "grant-role", "app", "app"],
            ["auth", "enable"],
        ):
            subprocess.run(
                ["etcdctl", "--endpoints", endpoint, *client_tls, *args],
                check=True,
                capture_output=True,
                env={**os.environ, "ETCDCTL_API": "3"},
                timeout=20,
            )
        yield server, pki
    finally:
        server.close()


async def test_tls_with_client_certificates_and_a_user_from_the_settings(
    member: tuple[ServerProcess, dict[str, Path]],
) -> None:
    server, pki = member
    settings = load_settings(
        env={"CM_ETCD_PASSWORD": PASSWORD},
        etcd_endpoints=[f"127.0.0.1:{server.port}"],
        etcd_user="app",
        etcd_ca_file=str(pki["ca"]),
        etcd_cert_file=str(pki["client"]),
        etcd_key_file=str(pki["client-key"]),
        etcd_timeout_seconds=3,
    )
    backend = await open_etcd(settings.etcd)
    try:
        revision = await backend.store.put("/services/secretKeys", "ciphertext")
        got = await backend.store.get("/services/secretKeys")
        assert got is not None and got.value == "ciphertext" and got.revision == revision
        assert "tls=True" in repr(backend.store) and PASSWORD not in repr(backend.store)
    finally:
        await backend.aclose()


async def test_the_wrong_ca_or_no_client_certificate_is_refused(
    member: tuple[ServerProcess, dict[str, Path]],
) -> None:
    server, pki = member
    endpoint = ("127.0.0.1", server.port)
    wrong_ca = TlsMaterial(
        ca=pki["other-ca"].read_bytes(), cert=pki["client"].read_bytes(), key=pki["client-key"].read_bytes()
    )
    no_client_cert = TlsMaterial(ca=pki["ca"].read_bytes())
    plaintext = None
    for tls in (wrong_ca, no_client_cert, plaintext):
        store = connect_etcd(endpoint, user="app", password=PASSWORD, tls=tls, timeout=1.5)
        try:
            with pytest.raises(Unavailable):
                await store.get("/services/secretKeys")
            assert await store.check() is False
        finally:
            await store.aclose()
