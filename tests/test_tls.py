"""TLS: `fednb domain serve --certfile/--keyfile` serves https, and the analyst's side verifies the
certificate: a private CA given with verify= is trusted, anything else is refused with a fednb error
that names the domain and says what to do. The CA is made here, with the cryptography package."""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest

import fednb
from fednb.client.http import DomainClient, run
from fednb.demo import data
from fednb.domain.process import DomainProcess
from fednb.errors import CertificateError, DomainUnavailable, InvalidInput
from tests.conftest import make_domain

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_ca(folder: Path, name: str):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    path = folder / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert, path


def make_server_cert(folder: Path, ca_key, ca_cert, host: str = "127.0.0.1") -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(host)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    certfile, keyfile = folder / "server.pem", folder / "server.key"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(_pem_key(key))
    keyfile.chmod(0o600)
    return certfile, keyfile


@pytest.fixture(scope="module")
def tls_domain(tmp_path_factory, alice_token):
    root = tmp_path_factory.mktemp("tls")
    ca_key, ca_cert, ca_pem = make_ca(root, "hospital-ca")
    _, _, other_ca = make_ca(root, "someone-else-ca")
    certfile, keyfile = make_server_cert(root, ca_key, ca_cert)
    d = make_domain(root, "secure", data.hospital("hospital-a"), token=alice_token)
    d.close()
    server = DomainProcess(root / "secure", extra_args=["--certfile", str(certfile), "--keyfile", str(keyfile)])
    server.start()
    yield {"server": server, "ca": ca_pem, "other_ca": other_ca, "root": root, "cert": certfile, "key": keyfile}
    server.stop()


def test_the_startup_line_says_https(tls_domain):
    server = tls_domain["server"]
    assert "serving on https://127.0.0.1:" in server.banner
    assert server.url.startswith("https://")


def test_a_client_that_trusts_the_owners_ca_connects(tls_domain, alice_token):
    client = DomainClient(tls_domain["server"].url, alice_token, verify=str(tls_domain["ca"]))
    assert run(client.info())["name"] == "secure"
    assert run(client.session())["analyst"] == "alice"
    run(client.aclose())


def test_connect_passes_verify_through_to_every_call(tls_domain, alice_token):
    fed = fednb.connect([tls_domain["server"].url], token=alice_token, verify=tls_domain["ca"])
    try:
        assert fed.dataset("patients").count().value == 1200  # submit + long-poll, over TLS
    finally:
        fed.close()


def test_default_verification_refuses_a_private_ca_naming_the_domain(tls_domain, alice_token):
    url = tls_domain["server"].url
    with pytest.raises(CertificateError) as caught:
        fednb.connect([url], token=alice_token)
    message = str(caught.value)
    assert url.split("://")[1] in message  # names the domain (host:port until it has answered)
    assert "certificate" in message and "verify=" in message
    assert "Traceback" not in message


def test_a_certificate_from_another_ca_is_refused(tls_domain, alice_token):
    client = DomainClient(tls_domain["server"].url, alice_token, verify=str(tls_domain["other_ca"]))
    with pytest.raises(CertificateError, match="not accepted"):
        run(client.info())


def test_plain_http_to_a_tls_port_and_tls_to_a_plain_port_fail_clearly(tls_domain, hospitals, alice_token):
    with pytest.raises(DomainUnavailable):
        run(DomainClient(tls_domain["server"].url.replace("https://", "http://"), alice_token, retries=0).info())
    with pytest.raises(DomainUnavailable, match="TLS handshake .* failed.*serving https"):
        run(DomainClient(hospitals[0].url.replace("http://", "https://"), alice_token, retries=0).info())


def test_a_missing_ca_file_is_named(tmp_path):
    with pytest.raises(InvalidInput, match="no-such-ca.pem"):
        DomainClient("https://127.0.0.1:1", "t", verify=str(tmp_path / "no-such-ca.pem"))


def test_serve_refuses_a_key_that_does_not_match_its_certificate(tls_domain, tmp_path):
    wrong_key = tmp_path / "wrong.key"
    wrong_key.write_bytes(_pem_key(ec.generate_private_key(ec.SECP256R1())))
    r = subprocess.run([sys.executable, "-m", "fednb", "domain", "serve", str(tls_domain["root"] / "secure"),
                        "--port", "0", "--certfile", str(tls_domain["cert"]), "--keyfile", str(wrong_key)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "cannot serve TLS" in r.stderr and "Traceback" not in r.stderr


def test_plain_http_beyond_loopback_gets_a_warning():
    from fednb.domain.server import plain_http_warning

    assert "unencrypted" in plain_http_warning("0.0.0.0", None)
    assert "--certfile" in plain_http_warning("192.0.2.7", None)
    assert "unencrypted" in plain_http_warning("::", None)
    for quiet in (("127.0.0.1", None), ("::1", None), ("localhost", None), ("0.0.0.0", "cert.pem")):
        assert plain_http_warning(*quiet) is None
