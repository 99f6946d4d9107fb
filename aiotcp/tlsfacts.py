"""TLS and certificate facts: what a handshake showed (:class:`TLSInfo`), what the peer's certificate says
(:class:`CertificateFacts`) and whether its chain verifies (:func:`verify_chain`) -- judged after the fact,
so a prober sees the certificate of a server it would not trust.

Theory of operation
-------------------
The handshake itself verifies nothing unless asked (``verify=False`` is the prober's default); the transport
keeps the chain the peer sent, as DER, in a :class:`TLSInfo` (a few microseconds per handshake: no parsing).
Parsing (:meth:`TLSInfo.certificate`) and verification (:meth:`TLSInfo.verify`) happen only when asked, with
``cryptography`` (imported then, as ``ssl`` is, so that importing this module costs nothing): its X.509 path
builder against the system's CA bundle or a given one. Its policy is relaxed to what OpenSSL enforces for
``--verify`` (extensions are not held to the Web PKI profile), so the verdict names why OpenSSL would refuse
the certificate, not why a browser vendor's root program would.

Verdicts (:data:`VERIFY_ERRORS`), stable strings like error kinds: ``None`` when the chain verifies for the
host name, else the first reason found in the order: no certificate, unreadable, expired, not yet valid,
self-signed, unknown issuer, invalid (any other chain failure), name mismatch.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import ipaddress
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from cryptography import x509

__all__ = [
    "VERIFY_ERRORS",
    "CertificateFacts",
    "TLSInfo",
    "load_ca",
    "parse_certificate",
    "tls_info",
    "verify_chain",
    "verify_error_from_message",
]

#: What :func:`verify_chain` may return, and what each means.
VERIFY_ERRORS: Final = {
    "no_certificate": "the server sent no certificate",
    "unreadable": "the server's certificate is not valid DER X.509",
    "expired": "the certificate's notAfter is in the past",
    "not_yet_valid": "the certificate's notBefore is in the future",
    "self_signed": "the certificate is signed by its own key and is not a trusted root",
    "unknown_issuer": "no chain leads from the certificate to a trusted root (the system's CAs or --ca)",
    "invalid": "a chain was found but a certificate in it breaks a rule (a signature, a CA constraint, a date)",
    "name_mismatch": "the chain verifies, but the certificate is not for the host name (or IP) asked for",
}


@dataclass(frozen=True, slots=True)
class CertificateFacts:
    """What a certificate says, as ``openssl x509`` prints it. ``issuer`` is the RFC 4514 string
    (``openssl x509 -nameopt RFC2253``); dates are RFC 3339 UTC; ``sha256`` is the fingerprint of the DER, in
    lowercase hex; ``sans`` the DNS names and IP addresses of subjectAltName, in order."""

    subject_cn: str | None
    sans: tuple[str, ...]
    issuer: str
    not_before: str
    not_after: str
    sha256: str
    self_signed: bool


@dataclass(frozen=True, slots=True)
class TLSInfo:
    """What a TLS handshake showed: ``version`` (``TLSv1.3``), ``cipher`` (OpenSSL's name), ``alpn`` (the
    protocol the server selected, or None) and ``chain``: the certificates the peer sent, as DER, leaf first,
    unverified (empty when it sent none)."""

    version: str | None
    cipher: str | None
    alpn: str | None
    chain: tuple[bytes, ...] = ()

    def __repr__(self) -> str:
        return f"<TLSInfo {self.version} {self.cipher} alpn={self.alpn} certificates={len(self.chain)}>"

    def certificate(self) -> CertificateFacts | None:
        """The leaf certificate's facts; None when the server sent none. Raises ``ValueError`` when it is not
        valid DER X.509."""
        return parse_certificate(self.chain[0]) if self.chain else None

    def verify(self, hostname: str, ca: str | None = None, *, at: datetime.datetime | None = None) -> str | None:
        """See :func:`verify_chain`."""
        return verify_chain(self.chain, hostname, ca, at=at)


def tls_info(ssl_object: Any) -> TLSInfo:
    """The facts of a finished handshake, from an :class:`ssl.SSLObject` or :class:`ssl.SSLSocket`."""
    cipher = ssl_object.cipher()
    return TLSInfo(
        version=ssl_object.version(),
        cipher=cipher[0] if cipher else None,
        alpn=ssl_object.selected_alpn_protocol(),
        chain=_peer_chain(ssl_object),
    )


def _peer_chain(ssl_object: Any) -> tuple[bytes, ...]:
    # The chain as sent, whether or not it was verified: public from Python 3.13 (DER bytes); before, the
    # same call exists on the C object (since 3.10), returning certificate objects. The leaf alone is the
    # fallback where neither exists.
    public = getattr(ssl_object, "get_unverified_chain", None)
    if public is not None:
        return tuple(public() or ())
    private = getattr(getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None)
    if private is not None:
        return tuple(cert.public_bytes(_ENCODING_DER) for cert in private() or ())
    leaf = ssl_object.getpeercert(binary_form=True)
    return (leaf,) if leaf else ()


_ENCODING_DER: Final = 2  # _ssl.ENCODING_DER, which the ssl module does not re-export


@contextmanager
def _quietly() -> Iterator[None]:
    """cryptography warns about certificates that break RFC 5280 in ways it still reads (a negative serial
    number): the certificates of servers, and of some system CAs, are what they are -- a warning on stderr
    would only garble the prober's output."""
    from cryptography.utils import CryptographyDeprecationWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        yield


def _rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@functools.lru_cache(maxsize=256)
def parse_certificate(der: bytes) -> CertificateFacts:
    """The facts of one DER certificate (cached: the servers of a list often share one). Raises ``ValueError``
    when ``der`` is not a certificate."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    with _quietly():
        cert = x509.load_der_x509_certificate(der)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    sans: list[str] = []
    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        pass
    else:
        for name in extension.value:
            if isinstance(name, x509.DNSName):
                sans.append(name.value)
            elif isinstance(name, x509.IPAddress):
                sans.append(str(name.value))
    return CertificateFacts(
        subject_cn=str(names[0].value) if names else None,
        sans=tuple(sans),
        issuer=cert.issuer.rfc4514_string(),
        not_before=_rfc3339(cert.not_valid_before_utc),
        not_after=_rfc3339(cert.not_valid_after_utc),
        sha256=hashlib.sha256(der).hexdigest(),
        self_signed=_self_signed(cert),
    )


def _self_signed(cert: x509.Certificate) -> bool:
    from cryptography.exceptions import InvalidSignature

    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (InvalidSignature, ValueError, TypeError):  # not its own signature, or a key type it cannot check
        return False
    return True


def verify_chain(
    chain: tuple[bytes, ...] | list[bytes], hostname: str, ca: str | None = None, *, at: datetime.datetime | None = None
) -> str | None:
    """Whether ``chain`` (DER, leaf first, as sent) verifies for ``hostname`` (a name or an IP address) against
    the CA bundle ``ca`` (PEM), or the system's CAs: None when it does, else one of :data:`VERIFY_ERRORS`.

    ``at``: the time to judge validity at (now). Raises ``OSError`` or ``ValueError`` when ``ca`` cannot be read
    or holds no certificate (the caller checks it once, before probing: :func:`load_ca`).
    """
    if not chain:
        return "no_certificate"
    if at is None:
        return _verify_now(tuple(chain), hostname, ca)
    return _verify(tuple(chain), hostname, ca, at)


@functools.lru_cache(maxsize=1024)
def _verify_now(chain: tuple[bytes, ...], hostname: str, ca: str | None) -> str | None:
    # Many targets of a list share a certificate (one server, many names or ports): judged once per run. A
    # verdict cached across midnight of a notAfter would be stale; a run is short next to a certificate.
    return _verify(chain, hostname, ca, datetime.datetime.now(datetime.UTC))


def _verify(chain: tuple[bytes, ...], hostname: str, ca: str | None, now: datetime.datetime) -> str | None:
    from cryptography import x509
    from cryptography.x509 import DNSName, IPAddress
    from cryptography.x509.verification import PolicyBuilder, VerificationError

    try:
        with _quietly():
            certs = [x509.load_der_x509_certificate(der) for der in chain]
    except ValueError:
        return "unreadable"
    leaf = certs[0]
    if now > leaf.not_valid_after_utc:
        return "expired"
    if now < leaf.not_valid_before_utc:
        return "not_yet_valid"
    try:
        store = _store(ca)
    except ValueError:  # no CA at all on this system
        return "unknown_issuer"
    subject: DNSName | IPAddress
    try:
        subject = IPAddress(ipaddress.ip_address(hostname.strip("[]")))
    except ValueError:
        subject = DNSName(hostname.rstrip(".").lower())
    builder = PolicyBuilder().store(store).time(now).extension_policies(ca_policy=_CA_POLICY(), ee_policy=_EE_POLICY())
    try:
        builder.build_server_verifier(subject).verify(leaf, certs[1:])
    except VerificationError as exc:
        message = str(exc)
        if "no matching subjectAltName" in message:
            # Only reported once a path was built: the chain itself verifies.
            return "name_mismatch"
        if "candidates exhausted" in message and "no interior errors" in message:
            return "self_signed" if _self_signed(leaf) else "unknown_issuer"
        if "not valid at validation time" in message:
            return "expired" if any(now > cert.not_valid_after_utc for cert in certs) else "not_yet_valid"
        return "invalid"
    except ValueError:  # a name cryptography will not match against (not a valid DNS name)
        return "name_mismatch"
    return None


@functools.cache
def _CA_POLICY() -> Any:
    from cryptography import x509
    from cryptography.x509.verification import Criticality, ExtensionPolicy

    return ExtensionPolicy.permit_all().require_present(x509.BasicConstraints, Criticality.AGNOSTIC, None)


@functools.cache
def _EE_POLICY() -> Any:
    from cryptography import x509
    from cryptography.x509.verification import Criticality, ExtensionPolicy

    return ExtensionPolicy.permit_all().require_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)


# OpenSSL's words (X509_verify_cert_error_string) for the verdicts, when a handshake with verification on failed.
_OPENSSL_REASONS: Final = (
    ("certificate has expired", "expired"),
    ("certificate is not yet valid", "not_yet_valid"),
    ("self-signed certificate", "self_signed"),
    ("self signed certificate", "self_signed"),
    ("unable to get local issuer certificate", "unknown_issuer"),
    ("unable to get issuer certificate", "unknown_issuer"),
    ("hostname mismatch", "name_mismatch"),
    ("ip address mismatch", "name_mismatch"),
)


def verify_error_from_message(message: str) -> str | None:
    """The verdict a failed handshake's message gives (verification on: OpenSSL refused the certificate), or
    None when the message is not about the certificate."""
    lowered = message.lower()
    if "certificate verify failed" not in lowered:
        return None
    return next((verdict for words, verdict in _OPENSSL_REASONS if words in lowered), "invalid")


def load_ca(path: str) -> int:
    """Check that ``path`` is a PEM bundle with at least one certificate (for a usage error before probing);
    the number of certificates. Raises ``OSError`` (unreadable) or ``ValueError`` (no certificate in it)."""
    return len(_store_certificates(path))


def _store(ca: str | None) -> Any:
    return _cached_store(ca or "")


@functools.lru_cache(maxsize=8)
def _cached_store(ca: str) -> Any:
    from cryptography.x509.verification import Store

    return Store(list(_store_certificates(ca or None)))


@functools.lru_cache(maxsize=8)
def _store_certificates(ca: str | None) -> tuple[x509.Certificate, ...]:
    with _quietly():
        return _read_store(ca)


def _read_store(ca: str | None) -> tuple[x509.Certificate, ...]:
    import ssl

    from cryptography import x509

    if ca is not None:
        with open(ca, "rb") as file:
            certs = x509.load_pem_x509_certificates(file.read())  # ValueError when there is none
        return tuple(certs)
    paths = ssl.get_default_verify_paths()
    for bundle in (os.environ.get(paths.openssl_cafile_env), paths.cafile, paths.openssl_cafile):
        if bundle and os.path.isfile(bundle):
            try:
                with open(bundle, "rb") as file:
                    return tuple(x509.load_pem_x509_certificates(file.read()))
            except (OSError, ValueError):
                continue
    # No bundle file (a hashed directory only, or another platform's store): what OpenSSL loaded.
    return tuple(
        x509.load_der_x509_certificate(der) for der in ssl.create_default_context().get_ca_certs(binary_form=True)
    )
