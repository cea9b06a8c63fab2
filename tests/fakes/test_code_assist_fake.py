"""The fake Code Assist is as strict as §B says the real one is: what it refuses here, a
gateway that gets it wrong would be refused for in production."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from gemgate.channels.google_oauth import SCOPES, pkce_pair
from tests.fakes.code_assist import CLIENT_ID, CLIENT_SECRET, FakeCodeAssist, quota_error

METADATA = {
    "ideType": "IDE_UNSPECIFIED",
    "platform": "PLATFORM_UNSPECIFIED",
    "pluginType": "GEMINI",
}
HI = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeCodeAssist]:
    with FakeCodeAssist() as server:
        yield server


def call(
    fake: FakeCodeAssist, path: str, body: Any = None, token: str | None = None
) -> tuple[int, Any]:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(fake.base_url + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw[:1] in b"{[" else raw
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def token_call(fake: FakeCodeAssist, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
    data = urllib.parse.urlencode({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, **form})
    try:
        with urllib.request.urlopen(fake.token_url, data=data.encode(), timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_generate_needs_the_wrapper_the_bearer_and_the_accounts_project(
    fake: FakeCodeAssist,
) -> None:
    fake.account("strict@example.com", project="proj-strict")
    token = fake.issue_token("strict@example.com")
    wrapped = {"model": "gemini-2.5-flash", "project": "proj-strict", "request": HI}
    assert call(fake, "/v1internal:generateContent", wrapped, token)[0] == 200
    assert call(fake, "/v1internal:generateContent", wrapped)[0] == 401
    assert call(fake, "/v1internal:generateContent", wrapped, "ya29.forged")[0] == 401
    status, bare = call(fake, "/v1internal:generateContent", HI, token)
    assert status == 400 and 'Unknown name "contents"' in bare["error"]["message"]
    status, other = call(fake, "/v1internal:generateContent", {**wrapped, "project": "p2"}, token)
    assert status == 403 and other["error"]["status"] == "PERMISSION_DENIED"
    unknown = {**wrapped, "model": "gemini-2.5-flash-image"}
    assert call(fake, "/v1internal:generateContent", unknown, token)[0] == 404
    with_id = {
        **wrapped,
        "request": {
            "contents": [
                {"role": "user", "parts": [{"text": "hi"}]},
                {
                    "role": "model",
                    "parts": [{"functionCall": {"name": "f", "args": {}, "id": "1"}}],
                },
            ]
        },
    }
    status, answer = call(fake, "/v1internal:generateContent", with_id, token)
    assert status == 400 and 'Unknown name "id"' in answer["error"]["message"]
    fake.expire_tokens("strict@example.com")
    assert call(fake, "/v1internal:generateContent", wrapped, token)[0] == 401


def test_count_tokens_takes_only_model_and_contents(fake: FakeCodeAssist) -> None:
    fake.account("count@example.com", project="proj-count")
    token = fake.issue_token("count@example.com")
    good = {"request": {"model": "models/gemini-2.5-pro", **HI}}
    status, answer = call(fake, "/v1internal:countTokens", good, token)
    assert status == 200 and answer["totalTokens"] > 0
    system = {"request": {**good["request"], "systemInstruction": {"parts": [{"text": "x"}]}}}
    assert call(fake, "/v1internal:countTokens", system, token)[0] == 400
    thought = {
        "request": {
            "model": "models/gemini-2.5-pro",
            "contents": [{"role": "user", "parts": [{"text": "hm", "thought": True}]}],
        }
    }
    assert call(fake, "/v1internal:countTokens", thought, token)[0] == 400


def test_onboarding_is_a_long_running_operation(fake: FakeCodeAssist) -> None:
    fake.account("new@example.com", licensed=("proj-new",))
    token = fake.issue_token("new@example.com")
    status, loaded = call(fake, "/v1internal:loadCodeAssist", {"metadata": METADATA}, token)
    assert status == 200 and "currentTier" not in loaded
    assert (
        call(
            fake,
            "/v1internal:onboardUser",
            {"tierId": "standard-tier", "metadata": METADATA},
            token,
        )[0]
        == 400
    )
    status, unlicensed = call(
        fake,
        "/v1internal:onboardUser",
        {"tierId": "standard-tier", "cloudaicompanionProject": "other", "metadata": METADATA},
        token,
    )
    assert status == 403 and "SUBSCRIPTION_REQUIRED" in json.dumps(unlicensed)
    onboard = {
        "tierId": "standard-tier",
        "cloudaicompanionProject": "proj-new",
        "metadata": METADATA,
    }
    status, operation = call(fake, "/v1internal:onboardUser", onboard, token)
    assert status == 200 and operation["done"] is False
    assert call(fake, f"/v1internal/{operation['name']}", None, token)[1]["done"] is False
    # Older clients re-POST instead of polling; both reach the same operation.
    status, done = call(fake, "/v1internal:onboardUser", onboard, token)
    assert done["done"] is True
    assert done["response"]["cloudaicompanionProject"]["id"] == "proj-new"
    status, loaded = call(fake, "/v1internal:loadCodeAssist", {"metadata": METADATA}, token)
    assert loaded["cloudaicompanionProject"] == "proj-new"
    assert loaded["currentTier"]["id"] == "standard-tier"


def test_personal_accounts_are_refused_since_the_cut_off(fake: FakeCodeAssist) -> None:
    fake.account("me@gmail.com", kind="personal")
    token = fake.issue_token("me@gmail.com")
    status, loaded = call(fake, "/v1internal:loadCodeAssist", {"metadata": METADATA}, token)
    assert status == 200 and "currentTier" not in loaded
    assert loaded["ineligibleTiers"][0]["reasonCode"] == "UNSUPPORTED_CLIENT"
    status, _ = call(
        fake, "/v1internal:onboardUser", {"tierId": "free-tier", "metadata": METADATA}, token
    )
    assert status == 400


def test_token_endpoint_refreshes_exchanges_and_refuses(fake: FakeCodeAssist) -> None:
    account = fake.account("oauth@example.com", project="proj-oauth")
    status, tokens = token_call(
        fake, {"grant_type": "refresh_token", "refresh_token": account.refresh_token}
    )
    assert status == 200 and tokens["access_token"].startswith("ya29.")
    assert "refresh_token" not in tokens and account.refreshes == 1
    account.revoked = True
    status, refused = token_call(
        fake, {"grant_type": "refresh_token", "refresh_token": account.refresh_token}
    )
    assert status == 400 and refused["error"] == "invalid_grant"
    status, bad_client = token_call(
        fake, {"grant_type": "refresh_token", "refresh_token": "x", "client_secret": "nope"}
    )
    assert status == 401 and bad_client["error"] == "invalid_client"
    status, bad_code = token_call(
        fake, {"grant_type": "authorization_code", "code": "4/0Aforged", "redirect_uri": "x"}
    )
    assert status == 400 and bad_code["error"] == "invalid_grant"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def authorize(fake: FakeCodeAssist, redirect_uri: str, **extra: str) -> tuple[int, str]:
    """Sign in at the authorize endpoint: the status, and the Location or the page shown."""
    params = {
        "client_id": CLIENT_ID,
        "response_type": "code",
        "scope": " ".join(SCOPES),
        "state": "s" * 64,
        "redirect_uri": redirect_uri,
        "access_type": "offline",
        **extra,
    }
    url = f"{fake.base_url}/o/oauth2/v2/auth?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.build_opener(_NoRedirect).open(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("location") or error.read().decode()


def code_of(location: str) -> str:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)["code"][0]


def test_sign_in_sends_back_only_where_an_installed_app_may_be_reached(
    fake: FakeCodeAssist,
) -> None:
    fake.login_email = "signin@example.com"
    for refused in (
        "https://gemgate.example.com/admin/oauth/gemini_cli/callback",
        "https://127.0.0.1:8000/cb",
        "http://10.0.0.5:8000/cb",
    ):
        status, page = authorize(fake, refused)
        assert status == 400 and "redirect_uri_mismatch" in page
    status, location = authorize(fake, "http://localhost:8123/admin/oauth/gemini_cli/callback")
    assert status == 302 and location.startswith("http://localhost:8123/admin/oauth/")
    assert "state=" + "s" * 64 in location

    # The code: once, for the same redirect_uri, with the verifier of its challenge.
    verifier, challenge = pkce_pair()
    uri = "http://127.0.0.1:9/cb"
    _, location = authorize(fake, uri, code_challenge=challenge, code_challenge_method="S256")
    exchange = {"grant_type": "authorization_code", "code": code_of(location)}
    status, wrong_uri = token_call(fake, {**exchange, "redirect_uri": uri + "x"})
    assert status == 400 and wrong_uri["error"] == "redirect_uri_mismatch"
    _, location = authorize(fake, uri, code_challenge=challenge, code_challenge_method="S256")
    exchange = {"grant_type": "authorization_code", "code": code_of(location), "redirect_uri": uri}
    status, no_verifier = token_call(fake, exchange)
    assert status == 400 and no_verifier["error"] == "invalid_request"
    _, location = authorize(fake, uri, code_challenge=challenge, code_challenge_method="S256")
    exchange["code"] = code_of(location)
    status, wrong = token_call(fake, {**exchange, "code_verifier": verifier + "x"})
    assert status == 400 and wrong["error"] == "invalid_grant"
    _, location = authorize(fake, uri, code_challenge=challenge, code_challenge_method="S256")
    exchange["code"] = code_of(location)
    status, tokens = token_call(fake, {**exchange, "code_verifier": verifier})
    assert status == 200 and tokens["refresh_token"].startswith("1//")
    status, again = token_call(fake, {**exchange, "code_verifier": verifier})
    assert status == 400 and again["error"] == "invalid_grant"

    # Online access: no refresh token.
    _, location = authorize(fake, uri, access_type="online")
    status, online = token_call(
        fake, {"grant_type": "authorization_code", "code": code_of(location), "redirect_uri": uri}
    )
    assert status == 200 and "refresh_token" not in online


def test_quota_errors_carry_the_b6_details(fake: FakeCodeAssist) -> None:
    fake.account("q@example.com", project="proj-q")
    token = fake.issue_token("q@example.com")
    fake.script(
        quota_error("QUOTA_EXHAUSTED", reset_delay="1h2m3s", reset_at="2099-01-01T00:00:00Z")
    )
    wrapped = {"model": "gemini-2.5-pro", "project": "proj-q", "request": HI}
    status, answer = call(fake, "/v1internal:generateContent", wrapped, token)
    assert status == 429 and answer["error"]["status"] == "RESOURCE_EXHAUSTED"
    info = answer["error"]["details"][0]
    assert info["reason"] == "QUOTA_EXHAUSTED" and info["domain"] == "cloudcode-pa.googleapis.com"
    assert info["metadata"]["quotaResetDelay"] == "1h2m3s"
    status, quota = call(fake, "/v1internal:retrieveUserQuota", {"project": "proj-q"}, token)
    assert status == 200 and {"gemini-2.5-pro", "gemini-2.5-pro_vertex"} <= {
        b["modelId"] for b in quota["buckets"]
    }
