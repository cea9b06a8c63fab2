"""What the gemini_cli channel believes about a credential between writing something back and
the pool reloading it from the store."""

from __future__ import annotations

import asyncio

from gemgate.channels.google_oauth import Tokens, claims_of, email_of
from tests.fakes.code_assist import id_token


def tokens() -> Tokens:
    return Tokens(lambda proxy: (None, None), "http://127.0.0.1:9/token", None)  # type: ignore[arg-type,return-value]


def test_what_was_written_back_wins_until_the_copy_shows_it() -> None:
    keeper = tokens()
    old = {"refresh_token": "r1", "access_token": "a1", "expiry": 1.0}
    asyncio.run(keeper.update(1, old, access_token="a2", expiry=9e9, project_id="p", tier="t"))
    # The pool still holds the old copy: the new token and the project are used.
    assert keeper.secret(1, old) == {
        **old,
        "access_token": "a2",
        "expiry": 9e9,
        "project_id": "p",
        "tier": "t",
    }
    reloaded = {**old, "access_token": "a2", "expiry": 9e9, "project_id": "p", "tier": "t"}
    assert keeper.secret(1, reloaded) is reloaded
    assert keeper.secret(1, old) is old  # forgotten once shown


def test_a_newer_change_elsewhere_replaces_what_was_written() -> None:
    keeper = tokens()
    old = {"refresh_token": "r1", "access_token": "a1", "expiry": 1.0, "project_id": "p1"}
    asyncio.run(keeper.update(1, old, project_id="p1", tier="standard-tier"))
    # The operator imports the account again for another project (no tier yet): setup must
    # run for it, so nothing learnt for the old project may stay laid over it.
    moved = {**old, "project_id": "p2"}
    assert keeper.secret(1, moved) is moved
    asyncio.run(keeper.update(2, old, access_token="a2", expiry=9e9))
    login = {"refresh_token": "r2", "access_token": "a3", "expiry": 5e9}
    assert keeper.secret(2, login) is login


def test_the_email_comes_from_the_id_token() -> None:
    token = id_token("someone@example.com")
    assert email_of(token) == "someone@example.com"
    assert claims_of(token)["aud"].endswith(".apps.googleusercontent.com")
    assert email_of("not-a-jwt") is None and email_of(None) is None
