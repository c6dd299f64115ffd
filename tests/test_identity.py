"""A domain's identity key: made once, kept private, and what it signs verifies only unchanged."""

import stat

from fednb.domain import Domain
from fednb.domain.identity import fingerprint, verify


def test_a_domain_keeps_one_identity_and_its_signatures_verify(tmp_path):
    domain = Domain.init(tmp_path / "d", "hospital-a")
    first = domain.identity
    again = Domain(tmp_path / "d").identity
    assert again.public_key == first.public_key and len(first.public_key) == 32
    assert stat.S_IMODE((tmp_path / "d" / "identity.key").stat().st_mode) == 0o600
    assert first.fingerprint == fingerprint(first.public_key) and first.fingerprint.startswith("SHA256:")
    signature = first.sign(b"round 1: my key is X")
    assert verify(first.public_key, b"round 1: my key is X", signature)
    assert not verify(first.public_key, b"round 1: my key is Y", signature)
    other = Domain.init(tmp_path / "e", "hospital-b").identity
    assert not verify(other.public_key, b"round 1: my key is X", signature)
    assert not verify(b"\0" * 5, b"x", signature)
