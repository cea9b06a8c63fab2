"""The address checks of gemgate.fetch: which URLs a client may make the gateway download."""

from __future__ import annotations

import pytest

from gemgate.config import Settings
from gemgate.fetch import Fetcher, FetchRefused, is_public, stays_upstream


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd00:ec2::254",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "2002:7f00:1::",  # 6to4 around 127.0.0.1
    ],
)
def test_private_and_special_addresses_are_refused(address: str) -> None:
    assert not is_public(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "142.250.1.1", "2001:4860:4860::8888"])
def test_public_addresses_pass(address: str) -> None:
    assert is_public(address)


def test_youtube_and_files_api_stay_with_gemini() -> None:
    assert stays_upstream("https://www.youtube.com/watch?v=abc")
    assert stays_upstream("https://youtu.be/abc")
    assert stays_upstream("https://generativelanguage.googleapis.com/v1beta/files/abc")
    assert not stays_upstream("https://example.com/cat.png")
    assert not stays_upstream("https://notyoutube.com.evil.test/x")


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://127.0.0.1:9/x.png", "127.0.0.1 is not a public address"),
        ("http://[::1]:9/x.png", "::1 is not a public address"),
        ("http://localhost:9/x.png", "localhost resolves to"),
        ("ftp://example.com/x.png", "only http and https"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is not a public address"),
    ],
)
async def test_fetcher_refuses_before_connecting(url: str, words: str) -> None:
    fetcher = Fetcher(Settings())
    try:
        with pytest.raises(FetchRefused) as refused:
            await fetcher.fetch(url)
        assert words in str(refused.value)
    finally:
        await fetcher.close()


async def test_allow_list_lets_a_named_private_host_through() -> None:
    # Port 9 (discard) on loopback is closed: getting as far as connecting proves the address
    # check let the allow-listed host through.
    fetcher = Fetcher(Settings(fetch_allow_hosts="localhost:9"))
    try:
        with pytest.raises(FetchRefused) as refused:
            await fetcher.fetch("http://localhost:9/x.png")
        assert "cannot connect" in str(refused.value)
    finally:
        await fetcher.close()
