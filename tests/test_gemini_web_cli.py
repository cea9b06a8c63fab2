"""`gemgate credentials add gemini_official` from the command line: cookies in every export
form, only Google's kept, never shown unmasked."""

from __future__ import annotations

import json
from pathlib import Path

from tests.harness import Gemgate

PSID = "g.a000Zx9SecretPsidValue0123456789"
PSIDTS = "sidts-CjEBSecretTimestampValue0987"


def test_cookies_in_every_export_form(tmp_path: Path) -> None:
    server = Gemgate(tmp_path / "data")
    header = f"Cookie: NID=511=abc; __Secure-1PSID={PSID}; __Secure-1PSIDTS={PSIDTS}"
    netscape = tmp_path / "cookies.txt"
    netscape.write_text(
        "# Netscape HTTP Cookie File\n"
        f".google.com\tTRUE\t/\tTRUE\t1900000000\t__Secure-1PSID\t{PSID}2\n"
        f"#HttpOnly_.google.com\tTRUE\t/\tTRUE\t1900000000\t__Secure-1PSIDTS\t{PSIDTS}\n"
        ".example.com\tTRUE\t/\tFALSE\t1900000000\ttracker\tnot-google\n"
    )
    extension = tmp_path / "cookies.json"
    extension.write_text(
        json.dumps(
            [
                {"name": "__Secure-1PSID", "value": PSID + "3", "domain": ".google.com"},
                {"name": "SID", "value": "sid-value", "domain": ".google.com"},
                {"name": "__Secure-1PSID", "value": "other-site", "domain": ".example.org"},
            ]
        )
    )
    out = server.cli(
        "credentials", "add", "gemini_official", "--cookies", header, "--label", "header",
        "--proxy", "socks5://127.0.0.1:1080",
    ).stdout  # fmt: skip
    assert "added credential 1 (header) to gemini_official" in out
    server.cli("credentials", "add", "gemini_official", "--cookies", str(netscape))
    server.cli("credentials", "add", "gemini_official", "--cookies", str(extension))
    server.cli("credentials", "add", "gemini_official", "--psid", PSID + "4")

    listing = server.cli("credentials", "list", "--json").stdout
    views = json.loads(listing)
    assert [sorted(v["secret"]) for v in views] == [
        ["cookies", "psid", "psidts"],
        ["psid", "psidts"],  # the example.com cookie was dropped
        ["cookies", "psid"],
        ["psid"],
    ]
    assert views[0]["proxy"] == "socks5://127.0.0.1:1080"
    assert PSID not in listing and PSIDTS not in listing and "sid-value" not in listing

    again = server.cli("credentials", "add", "gemini_official", "--psid", PSID, check=False)
    assert again.returncode != 0 and "already credential 1" in again.stderr
    missing = server.cli(
        "credentials", "add", "gemini_official", "--cookies", "NID=1; SID=2", check=False
    )
    assert missing.returncode != 0 and "no __Secure-1PSID cookie" in missing.stderr
    bad_proxy = server.cli(
        "credentials", "add", "gemini_official", "--psid", "x" * 20, "--proxy", "ftp://h:1",
        check=False,
    )  # fmt: skip
    assert bad_proxy.returncode != 0 and "socks5" in bad_proxy.stderr

    guide = server.cli("credentials", "add", "--help").stdout
    assert "export from Firefox" in guide and "__Secure-1PSIDTS" in guide
    assert "Close the private window without chatting" in guide


def test_credentials_test_says_whether_the_cookies_still_sign_in(tmp_path: Path) -> None:
    from tests.fakes.gemini_web import FakeGeminiWeb

    with FakeGeminiWeb() as fake:
        account = fake.add_account("g.a000psid-credtest", tier=2)
        server = Gemgate(tmp_path / "data", fake.env())
        server.cli(
            "credentials", "add", "gemini_official", "--psid", account.psid,
            "--psidts", account.psidts,
        )  # fmt: skip
        assert "works: " in server.cli("credentials", "test", "1").stdout
        fake.revoke(account.psid)
        failed = server.cli("credentials", "test", "1", check=False)
        assert failed.returncode != 0
        assert "signed out: cookies expired or revoked — export them again" in failed.stderr
        listing = server.cli("credentials", "list").stdout
        assert "invalid: signed out" in listing and account.psid not in listing
