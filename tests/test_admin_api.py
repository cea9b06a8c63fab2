"""The admin API over HTTP against a running gemgate, as an operator's script uses it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.admin_client import AdminClient, fetch
from tests.conftest import start_gemgate
from tests.fakes.code_assist import FakeCodeAssist
from tests.fakes.gemini_api import FakeGeminiAPI, Reply
from tests.gemini_cli_setup import code_assist_env
from tests.harness import Gemgate

TOKEN = "admin-token-for-tests-0123456789"
PSID = "g.a000psid-value-for-an-admin-api-test-0123456789"
PSIDTS = "sidts-CjIB-psidts-value-for-an-admin-api-test"
API_KEY = "AIzaFakeKeyBravo0002"
USAGE = {"promptTokenCount": 8, "candidatesTokenCount": 12, "totalTokenCount": 20}


@pytest.fixture(scope="module")
def code_assist() -> Iterator[FakeCodeAssist]:
    with FakeCodeAssist() as fake:
        yield fake


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    fake_gemini: FakeGeminiAPI,
    code_assist: FakeCodeAssist,
) -> Iterator[Gemgate]:
    gate = start_gemgate(
        tmp_path_factory.mktemp("admin"),
        fake_gemini,
        {
            "GEMGATE_ADMIN_TOKEN": TOKEN,
            "GEMGATE_METRICS_TOKEN": "metrics-secret",
            **code_assist_env(code_assist),
        },
    )
    gate.start()
    yield gate
    gate.stop()


@pytest.fixture
def admin(server: Gemgate) -> AdminClient:
    return AdminClient(server.url + "/admin/api", TOKEN)


def test_the_admin_api_wants_the_admin_token(server: Gemgate) -> None:
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": TOKEN}):
        answer = fetch(server.url + "/admin/api/keys", headers=headers)
        assert answer.status_code == 401
        assert "admin token" in answer.json()["error"]["message"]


def test_keys_are_created_shown_once_updated_and_revoked(
    server: Gemgate, admin: AdminClient, gemini: FakeGeminiAPI
) -> None:
    created = admin.post(
        "/keys",
        json_body={
            "name": "team-a",
            "channels": ["gemini"],
            "models": "gemini-2.5-*",
            "endpoints": ["chat"],
            "rpm": 100,
            "tpm": 50000,
            "quota_tokens": 1000000,
        },
    )
    assert created.status_code == 201
    secret = created.json()["secret"]
    view = created.json()["key"]
    assert view["channels"] == ["gemini"] and view["models"] == ["gemini-2.5-*"]
    assert (view["rpm"], view["tpm"], view["quota_tokens"]) == (100, 50000, 1000000)
    listed = admin.get("/keys")
    assert secret not in listed.text and secret[-20:] not in listed.text
    assert any(k["name"] == "team-a" for k in listed.json()["keys"])

    if not any(c["channel"] == "gemini" for c in admin.get("/credentials").json()["credentials"]):
        admin.post("/credentials", json_body={"channel": "gemini", "api_key": API_KEY})
    sdk = openai.OpenAI(base_url=server.url + "/v1", api_key=secret, max_retries=0)
    answer = sdk.chat.completions.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}]
    )
    assert answer.choices[0].message.content
    with pytest.raises(openai.PermissionDeniedError):
        sdk.chat.completions.create(
            model="gemini-3-flash-preview", messages=[{"role": "user", "content": "hi"}]
        )

    updated = admin.patch(f"/keys/{view['id']}", json_body={"models": None, "rpm": None})
    assert updated.status_code == 200
    assert updated.json()["models"] == "all" and updated.json()["rpm"] is None
    assert updated.json()["tpm"] == 50000  # not given, so left alone
    sdk.chat.completions.create(
        model="gemini-3-flash-preview", messages=[{"role": "user", "content": "hi"}]
    )

    revoked = admin.post("/keys/team-a/revoke")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    with pytest.raises(openai.AuthenticationError):
        sdk.chat.completions.create(
            model="gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}]
        )


@pytest.mark.parametrize(
    ("method", "path", "body", "words"),
    [
        ("POST", "/keys", {"name": ""}, "needs a name"),
        ("POST", "/keys", {"name": "x", "channels": ["gemni"]}, "gemni"),
        ("POST", "/keys", {"name": "x", "rpm": 0}, "rpm"),
        ("POST", "/keys", {"name": "x", "rpm": "lots"}, "rpm"),
        ("POST", "/keys", {"name": "x", "colour": "red"}, "colour"),
        ("POST", "/credentials", {"channel": "gemini"}, "api_key"),
        ("POST", "/credentials", {"channel": "nope", "api_key": "x"}, "nope"),
        ("POST", "/credentials", {"channel": "gemini", "api_key": "a b"}, "one word"),
        (
            "POST",
            "/credentials",
            {"channel": "gemini", "api_key": "AIzaX1234567890", "proxy": "x"},
            "proxy",
        ),
        ("GET", "/usage?bucket=week", None, "bucket"),
        ("GET", "/usage?since=yesterday", None, "since"),
        ("GET", "/errors?limit=0", None, "limit"),
    ],
)
def test_bad_input_is_a_400_with_a_message(
    admin: AdminClient, method: str, path: str, body: object, words: str
) -> None:
    answer = admin.request(method, path, json_body=body)
    assert answer.status_code == 400, answer.text
    assert words in answer.json()["error"]["message"]


def test_not_json_is_a_400(admin: AdminClient) -> None:
    answer = admin.post("/keys", content=b"{name")
    assert answer.status_code == 400 and "JSON" in answer.json()["error"]["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/keys/nobody"),
        ("PATCH", "/keys/9999"),
        ("POST", "/keys/9999/revoke"),
        ("GET", "/credentials/9999"),
        ("POST", "/credentials/9999/test"),
        ("POST", "/credentials/9999/enable"),
        ("DELETE", "/credentials/9999"),
        ("GET", "/credentials/abc"),
        ("GET", "/nothing-here"),
    ],
)
def test_an_unknown_id_is_a_404(admin: AdminClient, method: str, path: str) -> None:
    answer = admin.request(method, path, json_body={"rpm": 5} if method == "PATCH" else None)
    assert answer.status_code == 404, answer.text
    assert answer.json()["error"]["message"]


def test_credentials_show_live_state_and_a_broken_one_says_why(
    server: Gemgate, admin: AdminClient, gemini: FakeGeminiAPI
) -> None:
    secret = "AIzaFakeKeyCharlie03"
    added = admin.post(
        "/credentials",
        json_body={"channel": "gemini", "api_key": secret, "label": "charlie", "proxy": None},
    )
    assert added.status_code == 201, added.text
    cred = added.json()
    assert secret not in added.text and cred["secret"]["api_key"] == "AIza…ie03"
    tested = admin.post(f"/credentials/{cred['id']}/test").json()
    assert tested["ok"] and "models" in tested["message"]
    again = admin.post("/credentials", json_body={"channel": "gemini", "api_key": secret})
    assert again.status_code == 400 and "already" in again.json()["error"]["message"]

    # Only this credential serves: the others are disabled for the test.
    others = [
        c["id"] for c in admin.get("/credentials").json()["credentials"] if c["id"] != cred["id"]
    ]
    for other in others:
        admin.post(f"/credentials/{other}/disable")
    key = admin.post("/keys", json_body={"name": "live"}).json()["secret"]
    sdk = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
    gemini.always(Reply.text("fine", usage=USAGE))
    sdk.chat.completions.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}]
    )
    gemini.script(Reply.error(429, "Resource has been exhausted", retry_delay="30s"))
    with pytest.raises(openai.RateLimitError):
        sdk.chat.completions.create(
            model="gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}]
        )
    view = admin.get(f"/credentials/{cred['id']}").json()
    assert view["state"] == "cooling"
    assert [c["model"] for c in view["cooldowns"]] == ["gemini-2.5-flash"]
    assert 20 < view["cooldowns"][0]["seconds_left"] <= 30
    assert view["last_success_at"] and view["last_error_at"]
    assert view["requests_last_hour"] == 2 and view["errors_last_hour"] == 1
    assert "429" in view["last_error"]

    gemini.keys.discard(secret)
    try:
        with pytest.raises(openai.APIStatusError):
            sdk.chat.completions.create(
                model="gemini-2.5-pro", messages=[{"role": "user", "content": "hi"}]
            )
        view = admin.get(f"/credentials/{cred['id']}").json()
        assert view["state"] == "invalid" and "API key not valid" in view["status_reason"]
        assert "refused" in view["reason"]
        failed = admin.post(f"/credentials/{cred['id']}/test").json()
        assert not failed["ok"] and "API key not valid" in failed["message"]
    finally:
        gemini.keys.add(secret)
    errors = admin.get("/errors").json()["errors"]
    upstream = [e for e in errors if e["source"] == "upstream" and e["credential_id"] == cred["id"]]
    assert upstream and upstream[0]["request_id"].startswith("req_")
    requests = [e for e in errors if e["source"] == "request" and e["key"] == "live"]
    assert requests and requests[0]["status"] in (429, 503)
    assert secret not in admin.get("/errors").text

    assert admin.post(f"/credentials/{cred['id']}/enable").json()["state"] == "cooling"
    assert admin.post(f"/credentials/{cred['id']}/disable").json()["state"] == "disabled"
    removed = admin.delete(f"/credentials/{cred['id']}")
    assert removed.status_code == 200 and secret not in removed.text
    assert admin.get(f"/credentials/{cred['id']}").status_code == 404
    for other in others:
        admin.post(f"/credentials/{other}/enable")


def test_usage_by_key_model_and_channel(
    server: Gemgate, admin: AdminClient, gemini: FakeGeminiAPI
) -> None:
    if not any(c["enabled"] for c in admin.get("/credentials").json()["credentials"]):
        admin.post("/credentials", json_body={"channel": "gemini", "api_key": API_KEY})
    key = admin.post("/keys", json_body={"name": "counted"}).json()["secret"]
    sdk = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
    gemini.always(Reply.text("fine", usage=USAGE))
    for _ in range(3):
        sdk.chat.completions.create(
            model="gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}]
        )
    by_key = admin.get("/usage", params={"by": "key", "bucket": "hour", "since": "3h"}).json()
    counted = next(s for s in by_key["series"] if s["group"] == "counted")
    assert sum(p["requests"] for p in counted["points"]) == 3
    assert sum(p["total_tokens"] for p in counted["points"]) == 60
    assert len(by_key["slots"]) in (3, 4) and by_key["bucket"] == "hour"
    by_model = admin.get("/usage", params={"by": "model"}).json()
    assert any(t["group"] == "gemini-2.5-flash" and t["requests"] >= 3 for t in by_model["totals"])
    by_channel = admin.get(
        "/usage", params={"by": "channel", "since": "2020-01-01", "until": "2020-01-03"}
    )
    assert by_channel.json()["totals"] == [] and len(by_channel.json()["slots"]) == 3


def test_metrics_count_requests_tokens_and_credentials(
    server: Gemgate, admin: AdminClient, gemini: FakeGeminiAPI
) -> None:
    assert fetch(server.url + "/metrics").status_code == 401
    if not any(c["enabled"] for c in admin.get("/credentials").json()["credentials"]):
        admin.post("/credentials", json_body={"channel": "gemini", "api_key": API_KEY})
    key = admin.post("/keys", json_body={"name": "metered"}).json()["secret"]
    sdk = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
    gemini.always(Reply.text("fine", usage=USAGE))
    before = _metrics(server)
    for stream in (False, True):
        answer = sdk.chat.completions.create(
            model="gemini-2.5-pro", messages=[{"role": "user", "content": "hi"}], stream=stream
        )
        if stream:
            list(answer)  # type: ignore[arg-type]
    after = _metrics(server)
    line = (
        'gemgate_requests_total{channel="gemini",endpoint="chat",'
        'model="gemini-2.5-pro",status="200"}'
    )
    assert after.get(line, 0) - before.get(line, 0) == 2
    tokens = 'gemgate_tokens_total{channel="gemini",direction="out",model="gemini-2.5-pro"}'
    assert after[tokens] - before.get(tokens, 0) == 24
    first = 'gemgate_time_to_first_byte_seconds_count{channel="gemini",model="gemini-2.5-pro"}'
    assert after[first] - before.get(first, 0) == 1
    assert after['gemgate_credentials{channel="gemini",state="ok"}'] >= 1


def _metrics(server: Gemgate) -> dict[str, float]:
    text = fetch(server.url + "/metrics", headers={"authorization": "Bearer metrics-secret"}).text
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_serve_makes_an_admin_token_once_and_keeps_only_its_hash(
    tmp_path: Path, gemini: FakeGeminiAPI
) -> None:
    gate = start_gemgate(tmp_path, gemini).start()
    try:
        lines = gate.log().splitlines()
        token = lines[lines.index(next(x for x in lines if x.startswith("admin token"))) + 1]
        assert f"{gate.url}/admin/" in gate.log()
        ok = fetch(gate.url + "/admin/api/keys", headers={"authorization": f"Bearer {token}"})
        assert ok.status_code == 200
        assert token not in (tmp_path / "admin-token.sha256").read_text()
    finally:
        gate.stop()
    again = start_gemgate(tmp_path, gemini).start()
    try:
        assert token not in again.log() and "printed on the first start" in again.log()
        ok = fetch(again.url + "/admin/api/keys", headers={"authorization": f"Bearer {token}"})
        assert ok.status_code == 200
    finally:
        again.stop()


def test_credential_kinds_say_what_each_channel_needs(admin: AdminClient) -> None:
    kinds = {k["channel"]: k for k in admin.get("/credential-kinds").json()["kinds"]}
    assert [f["name"] for f in kinds["gemini"]["fields"]] == ["api_key"]
    assert kinds["gemini"]["fields"][0]["kind"] == "secret" and kinds["gemini"]["guide"]
    web = kinds["gemini_official"]
    assert [f["name"] for f in web["fields"]] == ["cookies", "psid", "psidts"]
    assert any("Firefox" in step for step in web["steps"])
    assert any("without chatting" in step for step in web["steps"])


def test_a_gemini_cli_account_is_added_by_pasting_its_oauth_file(admin: AdminClient) -> None:
    refresh = "1//0refresh-token-for-an-admin-api-test"
    pasted = json.dumps(
        {
            "access_token": "ya29.access-token-for-an-admin-api-test",
            "refresh_token": refresh,
            "expiry_date": 1_900_000_000_000,
            "token_type": "Bearer",
        }
    )
    bad = admin.post("/credentials", json_body={"channel": "gemini_cli", "oauth_creds": "{"})
    assert bad.status_code == 400 and "not JSON" in bad.json()["error"]["message"]
    added = admin.post(
        "/credentials",
        json_body={"channel": "gemini_cli", "oauth_creds": pasted, "project": "my-project"},
    )
    assert added.status_code == 201, added.text
    assert refresh not in added.text and "ya29.access" not in added.text
    cred = added.json()
    assert cred["channel"] == "gemini_cli" and cred["secret"]["project_id"] == "my-project"
    assert admin.delete(f"/credentials/{cred['id']}").status_code == 200


def test_quota_left_is_read_where_the_channel_reports_it(
    admin: AdminClient, code_assist: FakeCodeAssist
) -> None:
    account = code_assist.account("quota@example.com", project="proj-quota")
    account.quota = {"gemini-2.5-pro": 0.4, "gemini-2.5-flash": 0.9}
    oauth_file = code_assist.oauth_file("quota@example.com")
    added = admin.post(
        "/credentials", json_body={"channel": "gemini_cli", "oauth_creds": json.dumps(oauth_file)}
    )
    assert added.status_code == 201, added.text
    cred = added.json()
    assert cred["quota"] is None  # never read: Google is asked only when the operator asks

    read = admin.get(f"/credentials/{cred['id']}/quota")
    assert read.status_code == 200, read.text
    reading = read.json()
    assert reading["lowest"] == {
        "model": "gemini-2.5-pro",
        "left": "40%",
        "resets": account.quota_reset,
    }
    assert {m["model"]: m["left"] for m in reading["models"]}["gemini-2.5-flash"] == "90%"
    listed = {c["id"]: c for c in admin.get("/credentials").json()["credentials"]}
    assert listed[cred["id"]]["quota"]["lowest"]["left"] == "40%"
    everything = admin.get("/credentials").text + read.text
    assert oauth_file["refresh_token"] not in everything
    assert oauth_file["access_token"] not in everything

    # A channel that does not report it says so.
    api_key = (
        next(c for c in listed.values() if c["channel"] == "gemini")
        if any(c["channel"] == "gemini" for c in listed.values())
        else admin.post("/credentials", json_body={"channel": "gemini", "api_key": API_KEY}).json()
    )
    silent = admin.get(f"/credentials/{api_key['id']}/quota")
    assert silent.status_code == 400 and "does not report" in silent.json()["error"]["message"]
    assert admin.get("/credentials/9999/quota").status_code == 404
    assert admin.delete(f"/credentials/{cred['id']}").status_code == 200


@pytest.mark.parametrize(
    "values",
    [
        {"cookies": f"Cookie: __Secure-1PSID={PSID}; __Secure-1PSIDTS={PSIDTS}; NID=511=x"},
        {
            "cookies": json.dumps(
                [
                    {"name": "__Secure-1PSID", "value": PSID, "domain": ".google.com"},
                    {"name": "__Secure-1PSIDTS", "value": PSIDTS, "domain": ".google.com"},
                    {"name": "__Secure-1PSID", "value": "other-site", "domain": ".example.com"},
                ]
            )
        },
        {"psid": PSID, "psidts": PSIDTS, "proxy": "socks5://user:pw@127.0.0.1:1080"},
    ],
    ids=["cookie-header", "extension-json", "two-values"],
)
def test_a_gemini_web_session_is_added_from_its_cookies(
    admin: AdminClient, values: dict[str, str]
) -> None:
    added = admin.post(
        "/credentials", json_body={"channel": "gemini_official", "label": "web", **values}
    )
    assert added.status_code == 201, added.text
    cred = added.json()
    assert cred["channel"] == "gemini_official" and cred["label"] == "web"
    assert cred["secret"]["psid"] == "g.a0…6789" and cred["secret"]["psidts"] == "sidt…test"
    everything = added.text + admin.get("/credentials").text
    assert PSID not in everything and PSIDTS not in everything and "user:pw" not in everything
    assert admin.delete(f"/credentials/{cred['id']}").status_code == 200


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({}, "needs the cookies"),
        ({"cookies": f"__Secure-1PSID={PSID}", "psid": PSID}, "not both"),
        ({"cookies": "NID=1; SID=2"}, "no __Secure-1PSID"),
        ({"cookies": "[{"}, "not valid JSON"),
    ],
)
def test_a_gemini_web_session_without_its_cookie_is_refused(
    admin: AdminClient, values: dict[str, str], words: str
) -> None:
    refused = admin.post("/credentials", json_body={"channel": "gemini_official", **values})
    assert refused.status_code == 400 and words in refused.json()["error"]["message"]


def test_wrong_admin_tokens_are_slowed_down_per_address(
    tmp_path: Path, gemini: FakeGeminiAPI
) -> None:
    # A server of its own: its refusals must not reach the other tests.
    gate = start_gemgate(tmp_path, gemini, {"GEMGATE_ADMIN_TOKEN": TOKEN}).start()
    try:
        guesses = [
            fetch(gate.url + "/admin/api/keys", headers={"authorization": f"Bearer guess-{n}"})
            for n in range(5)
        ]
        assert [g.status_code for g in guesses] == [401] * 5
        throttled = fetch(gate.url + "/admin/api/keys", headers={"authorization": "Bearer x"})
        assert throttled.status_code == 429
        assert "too many wrong admin tokens" in throttled.json()["error"]["message"]
        # Even the right token waits: a guess that happens to be right must not stand out.
        right = fetch(gate.url + "/admin/api/keys", headers={"authorization": f"Bearer {TOKEN}"})
        assert right.status_code == 429
    finally:
        gate.stop()
