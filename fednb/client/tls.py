"""TLS on the analyst's side: which certificates to trust, and what to say when a domain's is refused.

``verify=True`` (the default) trusts the well-known public roots; ``verify="ca.pem"`` trusts the
certificate authority an owner (or their institution) runs, and nothing else; ``verify=False`` turns
checking off and is only for tests on one machine.
"""

from __future__ import annotations

import functools
import os
import ssl

from fednb.errors import InvalidInput


@functools.lru_cache(maxsize=1)
def public_roots() -> ssl.SSLContext:
    """One context trusting the public roots (certifi's, as httpx uses), shared by every client:
    building one reads and parses the whole bundle, ~0.1 s, which a federation of 100 domains paid
    100 times on connecting."""
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


def trust(verify: bool | str | os.PathLike | ssl.SSLContext) -> bool | ssl.SSLContext:
    """What httpx should verify against: False, or an SSL context (the public roots for True, or
    one built from a CA file or folder)."""
    if verify is True:
        return public_roots()
    if isinstance(verify, (bool, ssl.SSLContext)):
        return verify
    path = os.fspath(verify)
    if not os.path.exists(path):
        raise InvalidInput(f"verify={path!r}: no such CA certificate file or folder; give the PEM file of "
                           "the certificate authority that signed the domain's certificate")
    try:
        if os.path.isdir(path):
            return ssl.create_default_context(capath=path)
        return ssl.create_default_context(cafile=path)
    except (ssl.SSLError, ValueError) as exc:
        raise InvalidInput(f"verify={path!r} holds no usable CA certificate (PEM): {exc}") from None


def ssl_error(exc: BaseException) -> ssl.SSLError | None:
    """The TLS failure behind an httpx connection error, if that is what it was."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, ssl.SSLError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def explain(error: ssl.SSLError, url: str) -> tuple[bool, str]:
    """(is it the certificate?, a sentence for the analyst)."""
    if isinstance(error, ssl.SSLCertVerificationError):
        why = error.verify_message or str(error)
        return True, (f"its TLS certificate was not accepted ({why}); if the owner uses a private certificate "
                      "authority, connect with verify='path/to/ca.pem' (their CA certificate); ask the owner "
                      "if the certificate changed")
    reason = getattr(error, "reason", None) or str(error)
    return False, f"the TLS handshake with {url} failed ({reason}); is the domain serving https on that port?"
