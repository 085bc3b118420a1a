"""HTTP requests for attacks, through requests, behind the outbound guard.

The guard resolves the host of every request an attack sends (and of every redirect hop,
since it sits in the transport adapter requests calls for each one) and refuses it when
any address is one the ``OutboundPolicy`` refuses: link-local, instance metadata. The
address is checked when the request is sent; a name that resolves differently a moment
later (DNS rebinding) is a remaining gap, documented in docs/security.md.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from chalicelib.plugins.secret_policy import OutboundPolicy

# (host, port) -> the IP addresses a connection to it would use.
Resolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the system resolver gives for ``host`` (what requests would use)."""
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


class OutboundRefused(Exception):
    """A request the outbound guard did not send; the message says to where and why."""


def check_url(url: str, policy: OutboundPolicy, resolve: Resolver | None = None) -> None:
    """OutboundRefused unless every address ``url``'s host resolves to is allowed.

    A host that cannot be resolved is refused too (the check cannot decide: fail closed).
    The message names scheme, host and port only: a URL's path or query may hold a token.
    """
    if policy.allow_link_local:
        return
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise OutboundRefused(f"not sent: the URL's port is not a number ({host})") from None
    target = f"{parts.scheme}://{host}:{port}"
    if not host:
        raise OutboundRefused(f"not sent to {target}: the URL names no host")
    try:
        # Looked up at call time: ``system_resolver`` is the seam tests stub.
        addresses = (resolve or system_resolver)(host, port)
    except OSError as error:
        raise OutboundRefused(
            f"not sent to {target}: its address could not be checked ({error})"
        ) from None
    if not addresses:
        raise OutboundRefused(f"not sent to {target}: it resolves to no address")
    for address in addresses:
        refusal = policy.refusal(address)
        if refusal is not None:
            raise OutboundRefused(f"not sent to {target}: {refusal}")


class GuardedAdapter(HTTPAdapter):
    """requests' transport with the outbound check before each request (redirects too)."""

    def __init__(self, policy: OutboundPolicy, resolve: Resolver | None = None) -> None:
        super().__init__()
        self.policy = policy
        self.resolve = resolve

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        check_url(str(request.url), self.policy, self.resolve)
        return super().send(request, *args, **kwargs)


def guard_session(
    session: requests.Session, policy: OutboundPolicy, resolve: Resolver | None = None
) -> requests.Session:
    """``session`` with the guarded transport for http and https; returned for chaining."""
    adapter = GuardedAdapter(policy, resolve)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


@dataclass(frozen=True)
class HttpAnswer:
    status_code: int
    elapsed_ms: int


def send_json(
    method: str,
    url: str,
    headers: dict[str, str],
    payload: Any,
    timeout: float,
    *,
    policy: OutboundPolicy | None = None,
    resolve: Resolver | None = None,
) -> HttpAnswer:
    """Send one request, the payload (if any) as a JSON body; never follow redirects.

    OutboundRefused (nothing sent) when the guard refuses the host's addresses
    (``policy`` None: the default policy).
    """
    started = time.monotonic()
    with guard_session(requests.Session(), policy or OutboundPolicy(), resolve) as session:
        response = session.request(
            method,
            url,
            headers=headers,
            json=payload,
            timeout=timeout,
            allow_redirects=False,
        )
        elapsed_ms = int((time.monotonic() - started) * 1000)
        response.close()
    return HttpAnswer(status_code=response.status_code, elapsed_ms=elapsed_ms)
