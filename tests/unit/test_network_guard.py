"""The test suite's own guard: nothing but loopback and lab networks is reachable."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import REFUSED_ATTEMPTS


def test_a_public_address_is_refused_before_any_packet() -> None:
    with socket.socket() as probe, pytest.raises(OSError, match="tests may not reach"):
        probe.connect(("192.0.2.1", 443))  # TEST-NET-1: never routed anywhere
    # Recorded, so a test whose code swallows the OSError still fails; taken back here.
    assert REFUSED_ATTEMPTS == ["connect '192.0.2.1'"]
    REFUSED_ATTEMPTS.clear()


def test_public_names_are_not_even_resolved() -> None:
    with pytest.raises(OSError, match="tests may not resolve"):
        socket.getaddrinfo("dynamodb.eu-west-1.amazonaws.com", 443)
    assert REFUSED_ATTEMPTS == ["resolve 'dynamodb.eu-west-1.amazonaws.com'"]
    REFUSED_ATTEMPTS.clear()


def test_loopback_is_allowed() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.socket() as client:
            client.connect(server.getsockname())
