"""gemini_cli accounts over their life: import, tokens refreshed once and reused, onboarding,
quota failover, refusals in Google's words, and logging in. Each test runs its own gemgate."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anthropic
import openai
import pytest
from cryptography.fernet import Fernet

from tests.fakes.code_assist import FakeCodeAssist, Reply, quota_error
from tests.fakes.gemini_api import FakeGeminiAPI
from tests.gemini_cli_setup import add_oauth, cli_gemgate, credential_id, listed, write_oauth_file
from tests.harness import Gemgate
from tests.services import REDIS_URL, postgres_database, require


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeCodeAssist]:
    with FakeCodeAssist() as server:
        yield server


@pytest.fixture
def code_assist(fake: FakeCodeAssist) -> Iterator[FakeCodeAssist]:
    fake.reset()
    yield fake
    fake.reset()


@pytest.fixture
def server(tmp_path: Path, code_assist: FakeCodeAssist) -> Iterator[Gemgate]:
    gemgate = cli_gemgate(tmp_path / "data", code_assist)
    gemgate.client_key = gemgate.create_key("tests")  # type: ignore[attr-defined]
    yield gemgate
    gemgate.stop()


def ask(server: Gemgate, model: str = "gemini-2.5-pro") -> str:
    sdk = openai.OpenAI(
        base_url=server.url + "/gemini_cli/v1",
        api_key=server.client_key,  # type: ignore[attr-defined]
        max_retries=0,
        timeout=30,
    )
    answer = sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    return answer.choices[0].message.content or ""


def served_by(fake: FakeCodeAssist) -> list[str | None]:
    return [r.api_key for r in fake.requests if r.action == "generateContent"]


def test_import_checks_files_whole_and_shows_the_account(
    server: Gemgate, code_assist: FakeCodeAssist, tmp_path: Path
) -> None:
    code_assist.account("imp-a@example.com", project="proj-a")
    code_assist.account("imp-b@example.com", project="proj-b")
    folder = tmp_path / "creds"
    cli_file = code_assist.oauth_file("imp-a@example.com")
    write_oauth_file(folder, "a.json", cli_file)
    other = code_assist.oauth_file("imp-b@example.com")
    write_oauth_file(
        folder,
        "b.json",
        {
            "token": {
                "access_token": other["access_token"],
                "refresh_token": other["refresh_token"],
                "expiry": "2020-01-01T00:00:00Z",
                "token_uri": "https://oauth2.googleapis.com/token",
            },
            "project_id": "proj-b",
            "email": "imp-b@example.com",
        },
    )
    broken = write_oauth_file(tmp_path / "bad", "x.json", {"access_token": "ya29.only"})
    failed = server.cli(
        "credentials", "add", "gemini_cli", "--oauth-file", str(folder), str(broken), check=False
    )
    assert failed.returncode != 0
    assert "x.json" in failed.stderr and "no refresh_token" in failed.stderr
    assert len([line for line in failed.stderr.splitlines() if "x.json" in line]) == 1
    assert server.cli("credentials", "list", "--json").stdout.strip() == "[]"

    added = server.cli("credentials", "add", "gemini_cli", "--oauth-file", str(folder)).stdout
    assert "imp-a@example.com" in added and "standard-tier, project proj-a" in added
    assert "imp-b@example.com" in added and "project proj-b" in added
    shown = server.cli("credentials", "list").stdout
    assert "email=imp-a@example.com" in shown and "email=imp-b@example.com" in shown
    for secret in (cli_file["access_token"], cli_file["refresh_token"], other["refresh_token"]):
        assert secret not in shown and secret not in added
    # The second file's token had expired: the check refreshed it once.
    assert code_assist.accounts["imp-b@example.com"].refreshes == 1
    again = server.cli("credentials", "add", "gemini_cli", "--oauth-file", str(folder / "a.json"))
    assert again.stdout.startswith("renewed credential")
    assert len(listed(server)) == 2


def test_expired_token_is_refreshed_once_for_20_requests_and_reused_after_restart(
    server: Gemgate, code_assist: FakeCodeAssist, tmp_path: Path
) -> None:
    bob = code_assist.account("bob@example.com", project="proj-bob")
    expired = code_assist.oauth_file("bob@example.com", expired=True)
    add_oauth(server, write_oauth_file(tmp_path, "bob.json", expired), "--no-check")
    code_assist.refresh_delay = 0.3  # the other 19 arrive while the refresh is under way
    server.start()
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: ask(server), range(20)))
    assert answers == ["Hello from gemini-2.5-pro"] * 20
    assert bob.refreshes == 1
    tokens = {r.headers["authorization"] for r in code_assist.requests if r.action}
    assert len(tokens) == 1 and expired["access_token"] not in next(iter(tokens))
    stored = server.cli("credentials", "list").stdout
    assert next(iter(tokens)).removeprefix("Bearer ") not in stored

    second = cli_gemgate(server.data_dir, code_assist)  # another instance, same store
    second.client_key = server.client_key  # type: ignore[attr-defined]
    second.start()
    try:
        assert ask(second) == "Hello from gemini-2.5-pro"
    finally:
        second.stop()
    server.stop()
    server.start()
    assert ask(server) == "Hello from gemini-2.5-pro"
    assert bob.refreshes == 1  # the stored token was still good, for both

    code_assist.expire_tokens("bob@example.com")  # Google forgets it early: 401, refresh, retry
    assert ask(server) == "Hello from gemini-2.5-pro"
    assert bob.refreshes == 2


def test_an_account_needing_onboarding_is_served_on_its_first_request(
    server: Gemgate, code_assist: FakeCodeAssist, tmp_path: Path
) -> None:
    carol = code_assist.account("carol@example.com", licensed=("proj-carol",))
    path = write_oauth_file(tmp_path, "carol.json", code_assist.oauth_file("carol@example.com"))
    add_oauth(server, path, "--project", "proj-carol", "--no-check")
    server.start()
    with ThreadPoolExecutor(5) as pool:  # five first requests share one onboarding
        assert list(pool.map(lambda _: ask(server), range(5))) == ["Hello from gemini-2.5-pro"] * 5
    actions = [r.action for r in code_assist.requests]
    # The operation answers "not done" once more before it is done (fake.onboard_polls).
    assert actions[:4] == ["loadCodeAssist", "onboardUser", "operation", "operation"]
    assert actions[4:] == ["generateContent"] * 5
    onboard = code_assist.requests[1].body
    assert onboard["tierId"] == "standard-tier"
    assert onboard["cloudaicompanionProject"] == "proj-carol"
    assert carol.project == "proj-carol"
    secret = listed(server)["carol@example.com"]["secret"]
    assert secret["project_id"] == "proj-carol" and secret["tier"] == "standard-tier"
    assert carol.refreshes == 0  # the imported token was still good

    # A legacy free-tier account is onboarded without a project; Google provisions one.
    code_assist.account("dave@example.com", kind="free")
    path = write_oauth_file(tmp_path, "dave.json", code_assist.oauth_file("dave@example.com"))
    out = add_oauth(server, path).stdout
    assert "free-tier, project managed-" in out
    free_onboard = [r.body for r in code_assist.requests if r.action == "onboardUser"][-1]
    assert free_onboard["tierId"] == "free-tier" and "cloudaicompanionProject" not in free_onboard


def test_429s_fail_over_cool_the_model_and_quota_shows(
    server: Gemgate, code_assist: FakeCodeAssist, tmp_path: Path
) -> None:
    for name in ("alpha", "bravo"):
        code_assist.account(f"{name}@example.com", project=f"proj-{name}")
        path = write_oauth_file(
            tmp_path, f"{name}.json", code_assist.oauth_file(f"{name}@example.com")
        )
        add_oauth(server, path, "--no-check")
    server.start()
    code_assist.script(
        quota_error("QUOTA_EXHAUSTED", reset_delay="3h0m0s", reset_at="2099-01-01T00:00:00Z"),
        key="alpha@example.com",
    )
    # Round robin puts alpha first on one of these two; its 429 sends that one to bravo.
    assert [ask(server), ask(server)] == ["Hello from gemini-2.5-pro"] * 2
    assert served_by(code_assist).count("alpha@example.com") == 1
    code_assist.requests.clear()
    for _ in range(4):
        ask(server)
    assert set(served_by(code_assist)) == {"bravo@example.com"}  # alpha cools on this model
    code_assist.requests.clear()
    ask(server, "gemini-2.5-flash")
    ask(server, "gemini-2.5-flash")
    assert set(served_by(code_assist)) == {"alpha@example.com", "bravo@example.com"}

    # Capacity is Google's, not the account's: the next account tries, nobody cools.
    code_assist.requests.clear()
    code_assist.script(quota_error("MODEL_CAPACITY_EXHAUSTED", model="gemini-2.5-flash"))
    assert ask(server, "gemini-2.5-flash") == "Hello from gemini-2.5-flash"
    assert len(served_by(code_assist)) == 2

    # A server error fails over too, before the first byte.
    code_assist.requests.clear()
    code_assist.script(Reply.error(500))
    assert ask(server, "gemini-2.5-flash") == "Hello from gemini-2.5-flash"
    assert len(set(served_by(code_assist))) == 2

    # A short rate limit on the only account left for a model comes back as a 429.
    code_assist.script(
        quota_error("RATE_LIMIT_EXCEEDED", retry_delay="12s"), key="bravo@example.com"
    )
    with pytest.raises(openai.RateLimitError) as limited:
        ask(server)
    assert int(limited.value.response.headers["retry-after"]) >= 12

    code_assist.accounts["alpha@example.com"].quota = {"gemini-2.5-pro": 0.0}
    shown = json.loads(server.cli("credentials", "show", "alpha@example.com").stdout)
    assert [c["model"] for c in shown["cooldowns"]] == ["gemini-2.5-pro"]
    assert "QUOTA_EXHAUSTED" in shown["cooldowns"][0]["reason"] or shown["cooldowns"][0]["reason"]
    by_model = {row["model"]: row for row in shown["quota"]}
    assert by_model["gemini-2.5-pro"]["left"] == "0%"
    assert by_model["gemini-2.5-flash"]["left"] == "100%" and by_model["gemini-2.5-pro"]["resets"]
    summary = server.cli("credentials", "list", "--quota").stdout
    assert "quota: gemini-2.5-pro 0% until" in summary and "every model 100%" in summary


def test_refusals_are_stored_in_googles_words(
    server: Gemgate, code_assist: FakeCodeAssist, tmp_path: Path
) -> None:
    code_assist.account("personal@gmail.com", kind="personal")
    code_assist.account("verify@example.com", kind="validation")
    code_assist.account("banned@example.com", project="proj-banned", banned=True)
    code_assist.account("nolicence@example.com", project="proj-nl", unlicensed=True)
    for email in ("personal@gmail.com", "verify@example.com"):
        path = write_oauth_file(tmp_path, f"{email}.json", code_assist.oauth_file(email))
        out = add_oauth(server, path).stdout
        assert "Google refuses it, marked invalid" in out
    code_assist.account("agy@example.com", project="proj-agy", minted_by="1071006060591-agy")
    agy = code_assist.oauth_file("agy@example.com", expired=True)
    out = add_oauth(server, write_oauth_file(tmp_path, "agy.json", agy)).stdout
    assert "marked invalid: needs login" in out and "Antigravity" in out
    for email in ("banned@example.com", "nolicence@example.com"):
        path = write_oauth_file(tmp_path, f"{email}.json", code_assist.oauth_file(email))
        assert "standard-tier" in add_oauth(server, path).stdout
    states = listed(server)
    personal = states["personal@gmail.com"]["status_reason"]
    assert states["personal@gmail.com"]["status"] == "invalid"
    assert "no longer supported for Gemini Code Assist for individuals" in personal
    assert "UNSUPPORTED_CLIENT" in personal and "Standard/Enterprise" in personal
    assert (
        code_assist.accounts["verify@example.com"].validation_url
        in (states["verify@example.com"]["status_reason"])
    )
    server.start()
    with pytest.raises(openai.APIStatusError) as refused:
        for _ in range(2):  # whichever account goes first, both get tried
            ask(server)
    assert refused.value.status_code == 503
    server.wait_reload()
    states = listed(server)
    assert "Terms of Service" in states["banned@example.com"]["status_reason"]
    assert "licence" in states["nolicence@example.com"]["status_reason"]
    assert "SUBSCRIPTION_REQUIRED" in states["nolicence@example.com"]["status_reason"]
    generated = [r for r in code_assist.requests if r.action == "generateContent"]
    assert len(generated) == 2  # refused accounts are never asked again


def login(server: Gemgate, *options: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gemgate", "login", "gemini_cli", *options],
        env=server.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def url_from(process: subprocess.Popen[str], base: str) -> str:
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(base):
            return line.strip()
    raise AssertionError(f"no URL printed: {process.communicate()}")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def test_invalid_grant_reads_needs_login_and_a_browser_login_fixes_it(
    server: Gemgate, code_assist: FakeCodeAssist, tmp_path: Path
) -> None:
    eve = code_assist.account("eve@example.com", project="proj-eve")
    expired = code_assist.oauth_file("eve@example.com", expired=True)
    cred = credential_id(
        add_oauth(server, write_oauth_file(tmp_path, "e.json", expired), "--no-check").stdout
    )
    eve.revoked = True
    server.start()
    with pytest.raises(openai.APIStatusError) as refused:
        ask(server)
    assert refused.value.status_code == 503 and "new login" in str(refused.value)
    server.wait_reload()
    state = listed(server)["eve@example.com"]
    assert state["status"] == "invalid"
    assert state["status_reason"].startswith("needs login")
    assert "Token has been expired or revoked." in state["status_reason"]
    assert expired["refresh_token"] not in server.cli("credentials", "list").stdout

    # Eve signs in again: same account, a new refresh token.
    code_assist.account("eve@example.com", project="proj-eve")
    code_assist.login_email = "eve@example.com"
    process = login(server)
    url = url_from(process, code_assist.base_url)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query["redirect_uri"][0].startswith("http://127.0.0.1:")
    assert query["access_type"] == ["offline"] and len(query["state"][0]) == 64
    with urllib.request.urlopen(url, timeout=10) as page:  # the browser, signing in
        assert b"Signed in" in page.read()
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert f"renewed credential {cred} (eve@example.com)" in out and "proj-eve" in out
    server.wait_reload()
    assert listed(server)["eve@example.com"]["status"] == "ok"
    assert ask(server) == "Hello from gemini-2.5-pro"


def test_login_refuses_a_foreign_state_and_pastes_a_code_with_pkce(
    server: Gemgate, code_assist: FakeCodeAssist
) -> None:
    code_assist.account("login@example.com", project="proj-login")
    process = login(server)
    url = url_from(process, code_assist.base_url)
    redirect = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["redirect_uri"][0]
    with urllib.request.urlopen(f"{redirect}?code=stolen&state=forged", timeout=10) as page:
        assert b"state does not match" in page.read()
    out, err = process.communicate(timeout=30)
    assert process.returncode != 0 and "state does not match" in err
    assert listed(server) == {}

    process = login(server, "--no-browser")
    url = url_from(process, code_assist.base_url)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["redirect_uri"] == ["https://codeassist.google.com/authcode"]
    opener = urllib.request.build_opener(_NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as shown:
        opener.open(url, timeout=10)  # Google shows the code on its own page
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(shown.value.headers["location"]).query)
    out, err = process.communicate(code["code"][0] + "\n", timeout=30)
    assert process.returncode == 0, err
    assert "added credential" in out and "login@example.com" in out and "proj-login" in out
    exchange = code_assist.oauth_requests[-1]
    assert exchange["grant_type"] == "refresh_token" or "code_verifier" in exchange
    assert any("code_verifier" in r for r in code_assist.oauth_requests)


def test_unprefixed_names_route_between_the_gemini_and_gemini_cli_pools(
    tmp_path: Path, code_assist: FakeCodeAssist, gemini: FakeGeminiAPI
) -> None:
    code_assist.account("route@example.com", project="proj-route")
    server = cli_gemgate(
        tmp_path / "data", code_assist, {"GEMGATE_GEMINI_API_BASE": gemini.base_url}
    )
    server.client_key = server.create_key("tests")  # type: ignore[attr-defined]
    server.add_api_key("AIzaFakeKeyAlpha0001")
    path = write_oauth_file(tmp_path, "r.json", code_assist.oauth_file("route@example.com"))
    add_oauth(server, path, "--no-check")
    server.start()
    try:
        sdk = openai.OpenAI(
            base_url=server.url + "/v1",
            api_key=server.client_key,  # type: ignore[attr-defined]
            max_retries=0,
        )
        for model in ("gemini-2.5-flash", "gemini-2.5-flash_vertex"):
            sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
        # The OpenAI front reads `-thinking` itself; on the others it is gemini_cli's.
        claude = anthropic.Anthropic(
            base_url=server.url,
            api_key=server.client_key,  # type: ignore[attr-defined]
            max_retries=0,
        )
        claude.messages.create(
            model="gemini-2.5-flash-thinking",
            max_tokens=100,
            messages=[{"role": "user", "content": "hi"}],
        )
        assert [r.model for r in gemini.requests if r.action == "generateContent"] == [
            "gemini-2.5-flash"
        ]
        assert [r.model for r in code_assist.requests if r.action == "generateContent"] == [
            "gemini-2.5-flash_vertex",
            "gemini-2.5-flash",
        ]
    finally:
        server.stop()


def test_two_instances_refresh_an_expired_token_once_between_them(
    tmp_path: Path, code_assist: FakeCodeAssist
) -> None:
    require(6379, "Redis")
    fred = code_assist.account("fred@example.com", project="proj-fred")
    expired = code_assist.oauth_file("fred@example.com", expired=True)
    code_assist.refresh_delay = 0.3  # both instances ask while the first refresh is under way
    with postgres_database() as database:
        env = {
            "GEMGATE_DATABASE_URL": database,
            "GEMGATE_REDIS_URL": REDIS_URL,
            "GEMGATE_REDIS_NAMESPACE": "gg-test-" + secrets.token_hex(4),
            # Neither instance sees the other's write-back by reloading: only the lock helps.
            "GEMGATE_RELOAD_INTERVAL": "30",
            "GEMGATE_SECRET_KEY": Fernet.generate_key().decode(),
        }
        a = cli_gemgate(tmp_path / "a", code_assist, env)
        b = cli_gemgate(tmp_path / "b", code_assist, env)
        a.client_key = b.client_key = a.create_key("shared")  # type: ignore[attr-defined]
        add_oauth(a, write_oauth_file(tmp_path, "fred.json", expired), "--no-check")
        a.start()
        b.start()
        try:
            with ThreadPoolExecutor(20) as pool:
                answers = list(pool.map(lambda i: ask(a if i % 2 else b), range(20)))
        finally:
            a.stop()
            b.stop()
    assert answers == ["Hello from gemini-2.5-pro"] * 20
    assert fred.refreshes == 1
