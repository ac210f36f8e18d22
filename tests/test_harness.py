"""The test harness's own guarantees."""

from __future__ import annotations

import socket

import pytest


@pytest.mark.parametrize("address", [("10.0.2.1", 8729), ("192.168.88.1", 8728), ("8.8.8.8", 53)])
def test_network_guard_refuses_non_loopback(address: tuple[str, int]) -> None:
    with socket.socket() as s, pytest.raises(AssertionError, match="only loopback"):
        s.connect(address)
    with socket.socket() as s, pytest.raises(AssertionError, match="only loopback"):
        s.connect_ex(address)


def test_network_guard_allows_loopback() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.socket() as client:
            client.connect(server.getsockname())
