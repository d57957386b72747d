"""TLS for ``tls://`` addresses: the contexts both drivers use, and who a certificate names.

A client verifies the server's certificate and its host name unless given a context that says
otherwise (``ssl.create_default_context()``, as asyncio and ``urllib`` do); a server needs a context
holding its certificate and key, and asks for client certificates when the context does
(``verify_mode = CERT_REQUIRED``: mutual TLS, the client's subject in ``peer.tls_subject``).
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from ..core.errors import AddressError


def client_context(
    ca: str | Path | None = None, cert: str | Path | None = None, key: str | Path | None = None
) -> ssl.SSLContext:
    """A client's context: the server verified against ``ca`` (a PEM file; default: the system's
    trusted CAs), host name included; ``cert`` (and ``key``, if not in the same PEM file) for a
    server that asks for client certificates. Raises ``OSError``/``ssl.SSLError`` for files that do
    not load."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=None if ca is None else str(ca))
    if cert is not None:
        context.load_cert_chain(str(cert), None if key is None else str(key))
    return context


def server_context(
    cert: str | Path, key: str | Path | None = None, client_ca: str | Path | None = None
) -> ssl.SSLContext:
    """A server's context: its certificate chain ``cert`` (and ``key``, if not in the same PEM
    file); with ``client_ca``, clients must present a certificate that CA signed (mutual TLS).
    Raises ``OSError``/``ssl.SSLError`` for files that do not load."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), None if key is None else str(key))
    if client_ca is not None:
        context.load_verify_locations(str(client_ca))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_arguments(scheme: str, host: str, given: ssl.SSLContext | None, handshake_timeout: float) -> dict[str, Any]:
    """What asyncio's ``create_connection`` takes for an address of ``scheme``: nothing for
    ``tcp://``; for ``tls://`` the context (``given``, else a verifying default), the host name to
    check and the handshake's deadline. Raises :class:`AddressError` for a context with ``tcp://``."""
    if scheme not in ("tls", "wss"):
        if given is not None:
            raise AddressError("ssl= is for tls:// and wss:// addresses")
        return {}
    return {
        "ssl": given if given is not None else client_context(),
        "server_hostname": host,
        "ssl_handshake_timeout": handshake_timeout,
    }


def server_arguments(scheme: str, given: ssl.SSLContext | None, handshake_timeout: float) -> dict[str, Any]:
    """What asyncio's ``create_server`` takes for an address of ``scheme``. Raises
    :class:`AddressError` for ``tls://`` without a context, or a context with another scheme."""
    if scheme not in ("tls", "wss"):
        if given is not None:
            raise AddressError("ssl= is for tls:// and wss:// addresses")
        return {}
    if given is None:
        raise AddressError(f"serving {scheme}:// needs ssl=, a context holding the server's certificate and key")
    return {"ssl": given, "ssl_handshake_timeout": handshake_timeout}


_SHORT_NAMES = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C"}


def subject_of(certificate: Any) -> str | None:
    """The subject of a peer's certificate as ``getpeercert()`` gives it, written
    ``CN=alice,O=Example`` (``None`` without a verified certificate)."""
    if not certificate:
        return None
    relative_names = certificate.get("subject", ())
    parts = [f"{_SHORT_NAMES.get(name, name)}={value}" for relative in relative_names for name, value in relative]
    return ",".join(parts) or None
