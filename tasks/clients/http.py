"""What the clients share: an httpx client for one of our services, and the one-line cause of a
request that got no answer (refused, timed out, broken off, a TLS certificate not trusted)."""

from __future__ import annotations

import os
import ssl
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..base.errors import UsageError


def http_client(base_url: str, timeout: float, transport: httpx.BaseTransport | None = None,
                **options: Any) -> httpx.Client:
    """An ``httpx.Client`` for one service: the environment's proxy settings are ignored (the
    services are ours, on this host or in its containers), redirects are not followed.

    For a plain ``http://`` URL the client's TLS context trusts no certificate authority: no
    request can reach TLS from there, and httpx would otherwise load certifi's CA bundle for
    every task (about 30 ms of a ``keys.list`` that takes 0.2 s). ``https://`` URLs keep httpx's
    default verification against certifi's bundle - or against ``SSL_CERT_FILE`` /
    ``SSL_CERT_DIR`` when set (a private CA). Raises UsageError when those name no CA file.
    """
    verify: ssl.SSLContext | bool = True
    if transport is None and urlsplit(base_url).scheme == "http":
        verify = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # hostname checked, certificate required
    elif os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR"):
        # a private CA, named as OpenSSL (and httpx with trust_env) would take it; trust_env
        # stays off, so the environment's proxy settings are still not used
        try:
            verify = ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE") or None,
                                                capath=os.environ.get("SSL_CERT_DIR") or None)
        except (OSError, ssl.SSLError) as exc:
            raise UsageError("SSL_CERT_FILE / SSL_CERT_DIR name no readable CA certificates "
                             f"({type(exc).__name__})") from None
    return httpx.Client(base_url=base_url, timeout=httpx.Timeout(timeout), transport=transport,
                        trust_env=False, follow_redirects=False, verify=verify, **options)


def certificate_refused(exc: BaseException) -> bool:
    """Whether a connection failed because the server's TLS certificate was not trusted."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc)


def transport_failure(exc: httpx.TransportError, service: str, base_url: str, path: str,
                      timeout: float, advice: str) -> tuple[str, bool]:
    """Why a request to ``service`` (``"LiteLLM"``, ``"Open WebUI"``) at ``base_url`` got no
    answer, as one line ending in ``advice`` where the connection was refused; and whether the
    request may have been carried out all the same (sent, the answer lost: a read timeout or a
    connection broken off), as opposed to surely never sent. ``timeout`` in seconds."""
    if isinstance(exc, httpx.TimeoutException):
        never_sent = isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout))
        return (f"{service} at {base_url} did not answer {path} within {timeout:g}s; is it still "
                "starting? (gateway.timeout sets the limit)", not never_sent)
    if isinstance(exc, httpx.ConnectError):
        if certificate_refused(exc):
            return (f"{service} at {base_url} showed a TLS certificate this machine does not "
                    "trust; give its CA in SSL_CERT_FILE (or SSL_CERT_DIR)", False)
        return f"cannot connect to {service} at {base_url}; {advice}", False
    return (f"the connection to {service} at {base_url} broke during {path} "
            f"({type(exc).__name__})", True)
