"""The admin page in a real headless Chromium (Debian's `chromium`, driven by Playwright): what an
operator does in it, end to end, with a real client sending requests in between. Each page is
saved as a screenshot (see SHOTS)."""

from __future__ import annotations

import json
import os
import shutil
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.admin_client import AdminClient
from tests.conftest import start_gemgate
from tests.fakes.code_assist import FakeCodeAssist
from tests.fakes.gemini_api import FakeGeminiAPI, Reply
from tests.gemini_cli_setup import code_assist_env
from tests.harness import Gemgate

playwright = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
TOKEN = "page-admin-token-0123456789abcdef"
WORKING_KEY = "AIzaFakeKeyAlpha0001"
FAILING_KEY = "AIzaFakeKeyCharlie03"
PSID = "g.a000page-test-psid-value-0123456789abcdefghij"
PSIDTS = "sidts-CjIB-page-test-psidts-value-0123456789"
REMOTE_HOST = "gemgate.test"
# Where each page's screenshot goes: git-ignored by default, so a test run leaves the tree clean;
# GEMGATE_SCREENSHOTS=docs/screenshots refreshes the pictures the README shows.
SHOTS = Path(
    os.environ.get("GEMGATE_SCREENSHOTS") or Path(__file__).resolve().parent / "screenshots"
)
USAGE = {"promptTokenCount": 1200, "candidatesTokenCount": 800, "totalTokenCount": 2000}


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
        tmp_path_factory.mktemp("admin-page"),
        fake_gemini,
        {"GEMGATE_ADMIN_TOKEN": TOKEN, **code_assist_env(code_assist)},
    )
    gate.start()
    yield gate
    gate.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not shutil.which(CHROMIUM):
        missing = "Debian's chromium is not installed (apt-get install chromium)"
        if os.environ.get("GEMGATE_TEST_SERVICES") == "1":
            pytest.fail(missing)
        pytest.skip(missing)
    with playwright.sync_playwright() as driver:
        # REMOTE_HOST reaches this machine under a name that is not a loopback address, as an
        # admin page on a server is reached.
        chromium = driver.chromium.launch(
            executable_path=CHROMIUM, args=[f"--host-resolver-rules=MAP {REMOTE_HOST} 127.0.0.1"]
        )
        yield chromium
        chromium.close()


def shot(page: object, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


def log_in(page: object, server: Gemgate, token: str = TOKEN, base: str = "") -> None:
    page.goto((base or server.url) + "/admin/")  # type: ignore[attr-defined]
    page.fill("#token", token)  # type: ignore[attr-defined]
    # Until the page that answers has loaded: a click returns once it starts to arrive, and a
    # board of 100 rows may not all be there yet.
    with page.expect_navigation():  # type: ignore[attr-defined]
        page.click("button.primary")  # type: ignore[attr-defined]


def add_credential(page: object, server: Gemgate, api_key: str, label: str) -> int:
    page.goto(server.url + "/admin/credentials/new")  # type: ignore[attr-defined]
    page.fill("#gemini-api_key", api_key)  # type: ignore[attr-defined]
    page.fill("#gemini-label", label)  # type: ignore[attr-defined]
    page.click("text=Add Gemini API key")  # type: ignore[attr-defined]
    flash = page.inner_text(".flash")  # type: ignore[attr-defined]
    assert f"({label}) to gemini" in flash
    return int(flash.split("credential ")[1].split()[0])


def test_an_operator_runs_the_gateway_from_the_admin_page(
    server: Gemgate, browser: object, gemini: FakeGeminiAPI
) -> None:
    page = browser.new_page(viewport={"width": 1360, "height": 860})  # type: ignore[attr-defined]

    # Log in: a wrong token is refused in words, the right one opens the board.
    page.goto(server.url + "/admin/")
    assert page.url.endswith("/admin/login")
    shot(page, "login")
    log_in(page, server, "not-the-token")
    assert "not the admin token" in page.inner_text(".field-error")
    log_in(page, server)
    assert page.url.endswith("/admin/")
    assert "No credentials yet" in page.inner_text("main")
    cookie = next(c for c in page.context.cookies() if c["name"] == "gemgate_admin")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert TOKEN not in cookie["value"]

    # Add two API keys as credentials.
    page.goto(server.url + "/admin/credentials/new")
    shot(page, "add-credential")
    working = add_credential(page, server, WORKING_KEY, "alpha")
    failing = add_credential(page, server, FAILING_KEY, "charlie")
    assert WORKING_KEY not in page.content() and FAILING_KEY not in page.content()

    # Create a client key with scopes and limits; it is shown once.
    page.goto(server.url + "/admin/keys")
    page.fill("#name", "web-app")
    page.check("input[name=channels][value=gemini]")
    page.check("input[name=endpoints][value=chat]")
    page.fill("#rpm", "600")
    page.fill("#quota_tokens", "5000000")
    page.click("text=Create key")
    secret = page.input_value("#new-key")
    assert secret.startswith("gg-")
    shot(page, "key-created")
    page.goto(server.url + "/admin/keys")
    assert secret not in page.content()
    row = page.inner_text("tr:has-text('web-app')")
    assert "600 req/min" in row and "5,000,000 tokens total" in row and "gemini" in row

    # Edit it: a blank limit lifts it.
    page.click("tr:has-text('web-app') >> text=Edit")
    shot(page, "key-edit")
    page.fill("#rpm", "")
    page.fill("#tpm", "90000")
    page.click("text=Save")
    assert "Saved key web-app" in page.inner_text(".flash")
    row = page.inner_text("tr:has-text('web-app')")
    assert "req/min" not in row and "90,000 tokens/min" in row

    # A client uses the key through the OpenAI SDK; one credential's key stops working.
    gemini.always(Reply.text("Hello there", usage=USAGE))
    gemini.keys.discard(FAILING_KEY)
    try:
        sdk = openai.OpenAI(base_url=server.url + "/v1", api_key=secret, max_retries=0)
        for _ in range(4):
            answer = sdk.chat.completions.create(
                model="gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}]
            )
            assert answer.choices[0].message.content == "Hello there"
    finally:
        gemini.keys.add(FAILING_KEY)

    # The board: the working one shows its last success, the broken one is red and says why.
    page.goto(server.url + "/admin/")
    good = page.locator(f"#credential-{working}")
    assert good.get_attribute("data-state") == "ok"
    assert "ago" in good.locator(".last-success").inner_text()
    bad = page.locator(f"#credential-{failing}")
    assert bad.get_attribute("data-state") == "invalid"
    assert "Broken" in bad.inner_text() and "API key not valid" in bad.inner_text()
    background = bad.evaluate("row => getComputedStyle(row).backgroundColor")
    red, green, blue = (int(v) for v in background[4:-1].split(",")[:3])
    assert red > green and red > blue  # a red row
    pill = bad.locator(".pill").evaluate("p => getComputedStyle(p).color")
    assert pill == "rgb(180, 35, 24)"
    assert page.locator(".board-row[data-state]").first.get_attribute("id") == (
        f"credential-{failing}"
    )  # the broken one first
    shot(page, "credentials")

    # Usage: the chart and the table show the key's requests and tokens.
    page.goto(server.url + "/admin/usage")
    chart = page.locator("svg.chart").first
    assert chart.locator("rect title", has_text="web-app: 4").count() == 1
    row = page.inner_text("table.usage tr:has-text('web-app')")
    assert "4" in row and "8,000" in row
    shot(page, "usage")
    page.goto(server.url + "/admin/usage?by=model&bucket=hour&span=24h")
    assert "gemini-2.5-flash" in page.inner_text("table.usage")

    # Recent errors: the failed upstream attempt, with the request id the client saw.
    page.goto(server.url + "/admin/errors")
    errors = page.inner_text("table.errors")
    assert f"#{failing}" in errors and "req_" in errors and "API key not valid" in errors
    assert FAILING_KEY not in page.content()
    shot(page, "errors")

    # A form posted without the session's CSRF token changes nothing.
    refused = page.request.post(
        f"{server.url}/admin/credentials/{working}/disable", form={"x": "1"}
    )
    assert refused.status == 403 and "CSRF" in refused.text()
    forged = page.request.post(
        f"{server.url}/admin/credentials/{working}/disable", form={"csrf": "0" * 32}
    )
    assert forged.status == 403
    page.goto(server.url + "/admin/")
    assert page.locator(f"#credential-{working}").get_attribute("data-state") == "ok"

    # Buttons on the board: disable, then remove, the broken credential.
    bad = page.locator(f"#credential-{failing}")
    bad.locator("text=Disable").click()
    assert page.locator(f"#credential-{failing}").get_attribute("data-state") == "disabled"
    page.locator(f"#credential-{failing} summary").click()
    page.locator(f"#credential-{failing} button.danger").click()
    assert f"Removed credential {failing}" in page.inner_text(".flash")
    assert page.locator(f"#credential-{failing}").count() == 0

    # Revoke the key: the client is refused at once.
    page.goto(server.url + "/admin/keys")
    page.locator("tr:has-text('web-app') summary").click()
    page.locator("tr:has-text('web-app') button.danger").click()
    assert "Revoked key web-app" in page.inner_text(".flash")
    with pytest.raises(openai.AuthenticationError):
        sdk.chat.completions.create(
            model="gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}]
        )
    page.close()


def test_a_form_from_outside_without_a_session_is_refused(server: Gemgate, browser: object) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    refused = page.request.post(server.url + "/admin/keys", form={"name": "sneaky"})
    assert refused.status == 403
    login = page.request.post(server.url + "/admin/login", form={"token": TOKEN})
    assert login.status == 403 and "CSRF" in login.text()
    page.close()


def flash_id(page: object, channel: str) -> int:
    # The flash comes first in the page: the rows below it may still be arriving.
    page.wait_for_load_state("load")  # type: ignore[attr-defined]
    flash = page.inner_text(".flash")  # type: ignore[attr-defined]
    assert f"to {channel}" in flash or f"in {channel}" in flash, flash
    return int(flash.split("credential ")[1].split()[0])


def test_a_web_session_is_added_by_pasting_its_cookies(server: Gemgate, browser: object) -> None:
    page = browser.new_page(viewport={"width": 1360, "height": 860})  # type: ignore[attr-defined]
    log_in(page, server)
    page.goto(server.url + "/admin/credentials/new")
    guide = page.inner_text("#add-gemini_official .guide")
    for words in ("Firefox", "private window", "__Secure-1PSIDTS", "at once", "without chatting"):
        assert words in guide

    # The whole Cookie header of a request to gemini.google.com.
    page.fill(
        "#gemini_official-cookies",
        f"Cookie: SID=abc; __Secure-1PSID={PSID}; __Secure-1PSIDTS={PSIDTS}; NID=511=x",
    )
    page.fill("#gemini_official-label", "web-pasted")
    page.fill("#gemini_official-proxy", "socks5://me:pw@127.0.0.1:1080")
    page.click("text=Add Gemini web session")
    pasted = flash_id(page, "gemini_official")
    row = page.locator(f"#credential-{pasted}")
    assert "web-pasted" in row.inner_text() and "gemini_official" in row.inner_text()
    assert "g.a0…ghij" in row.inner_text() and "not reported" in row.inner_text()
    assert PSID not in page.content() and PSIDTS not in page.content()
    assert "me:pw" not in page.content()

    # The same account again is refused in words; the two values alone are enough.
    page.goto(server.url + "/admin/credentials/new")
    page.fill("#gemini_official-psid", PSID)
    page.click("text=Add Gemini web session")
    assert "already credential" in page.inner_text(".flash.error")
    page.fill("#gemini_official-psid", PSID.replace("0123", "9999"))
    page.fill("#gemini_official-psidts", PSIDTS)
    page.fill("#gemini_official-label", "web-values")
    page.click("text=Add Gemini web session")
    assert page.locator(f"#credential-{flash_id(page, 'gemini_official')}").count() == 1

    # A cookies.txt file uploaded instead of pasted.
    page.goto(server.url + "/admin/credentials/new")
    jar = (
        "# Netscape HTTP Cookie File\n"
        f".google.com\tTRUE\t/\tTRUE\t1900000000\t__Secure-1PSID\t{PSID}x\n"
    )
    page.set_input_files(
        "#gemini_official-cookies_file",
        files=[{"name": "cookies.txt", "mimeType": "text/plain", "buffer": jar.encode()}],
    )
    page.click("text=Add Gemini web session")
    assert page.locator(f"#credential-{flash_id(page, 'gemini_official')}").count() == 1
    assert PSID not in page.content()
    page.close()


def test_a_gemini_cli_account_is_added_from_its_file_and_shows_its_quota(
    server: Gemgate, browser: object, code_assist: FakeCodeAssist
) -> None:
    account = code_assist.account("upload@example.com", project="proj-upload")
    account.quota = {"gemini-2.5-pro": 0.25}
    oauth_file = code_assist.oauth_file("upload@example.com")
    page = browser.new_page(viewport={"width": 1360, "height": 860})  # type: ignore[attr-defined]
    log_in(page, server)
    page.goto(server.url + "/admin/credentials/new")
    page.set_input_files(
        "#gemini_cli-oauth_creds_file",
        files=[
            {
                "name": "oauth_creds.json",
                "mimeType": "application/json",
                "buffer": json.dumps(oauth_file).encode(),
            }
        ],
    )
    page.click("text=Add Gemini CLI account")
    cred = flash_id(page, "gemini_cli")
    row = page.locator(f"#credential-{cred}")
    assert "upload@example.com" in row.inner_text() and "not read yet" in row.inner_text()

    # The operator asks Google how much is left: the lowest model shows on the board.
    row.locator("button:text('Quota')").click()
    assert "gemini-2.5-pro with 25% left" in page.inner_text(".flash")
    quota = page.locator(f"#credential-{cred} .quota").inner_text()
    assert "25%" in quota and "gemini-2.5-pro" in quota and "read" in quota
    assert oauth_file["refresh_token"] not in page.content()
    assert oauth_file["access_token"] not in page.content()
    shot(page, "credentials-quota")

    # Pasted and uploaded at once is refused: which one was meant?
    page.goto(server.url + "/admin/credentials/new")
    page.fill("#gemini_cli-oauth_creds", json.dumps(oauth_file))
    page.set_input_files(
        "#gemini_cli-oauth_creds_file",
        files=[{"name": "x.json", "mimeType": "application/json", "buffer": b"{}"}],
    )
    page.click("text=Add Gemini CLI account")
    assert "not both" in page.inner_text(".flash.error")
    page.close()


def test_a_gemini_cli_account_signs_in_with_google_from_the_page(
    server: Gemgate, browser: object, code_assist: FakeCodeAssist
) -> None:
    code_assist.account("signin@example.com", project="proj-signin")
    code_assist.login_email = "signin@example.com"
    page = browser.new_page(viewport={"width": 1360, "height": 860})  # type: ignore[attr-defined]
    log_in(page, server)
    page.goto(server.url + "/admin/credentials/new")
    page.fill("#signin-label", "signed-in")
    with page.expect_navigation(url=lambda url: "/admin/oauth/gemini_cli/callback?" in url):
        page.click("button:text('Sign in with Google')")
    # Google was asked with PKCE to send the browser back to this page's own callback.
    asked = code_assist.oauth_requests[-1]
    assert asked["grant_type"] == "authorization_code" and asked["code_verifier"]
    assert asked["redirect_uri"] == server.url + "/admin/oauth/gemini_cli/callback"
    shot(page, "sign-in-done")
    # The page says what happened, then takes the admin to the board, where it says it again.
    page.wait_for_url(lambda url: "/admin/#credential-" in url)
    assert "Added credential" in page.inner_text(".flash")
    assert "proj-signin" in page.inner_text(".flash")
    cred = int(page.url.rsplit("-", 1)[1])
    row = page.locator(f"#credential-{cred}")
    assert "signed-in" in row.inner_text() and row.get_attribute("data-state") == "ok"
    assert "signin@example.com" in row.inner_text()
    stored = code_assist.accounts["signin@example.com"].refresh_token
    assert stored not in page.content()

    # The callback again (a replay), or with a state it never gave out: nothing is added.
    for query in (page.url, "state=forged&code=4/0Aforged"):
        if query.startswith("http"):
            continue
        answer = page.goto(f"{server.url}/admin/oauth/gemini_cli/callback?{query}")
        assert answer is not None and answer.status == 400
        assert "unknown, already used or expired" in page.inner_text("main")
    page.goto(server.url + "/admin/")
    assert page.locator(".board-row[data-state]").count() == len(
        page.locator(".board-row[id^=credential-]").all()
    )

    # Google says no: the page says so and nothing is added.
    code_assist.login_email = None
    page.goto(server.url + "/admin/credentials/new")
    before = page.locator(".board-row[id^=credential-]").count()
    page.click("button:text('Sign in with Google')")
    assert "access_denied" in page.inner_text("main")
    page.goto(server.url + "/admin/")
    assert page.locator(".board-row[id^=credential-]").count() >= before
    code_assist.login_email = "login@example.com"
    page.close()


def test_sign_in_from_a_remote_address_pastes_the_code_google_shows(
    server: Gemgate, browser: object, code_assist: FakeCodeAssist
) -> None:
    code_assist.account("remote@example.com", project="proj-remote")
    code_assist.login_email = "remote@example.com"
    context = browser.new_context(viewport={"width": 1360, "height": 860})  # type: ignore[attr-defined]
    # Google's own page that shows the code: this machine has no network, so it is drawn here.
    context.route(
        lambda url: url.startswith("https://codeassist.google.com/authcode?"),
        lambda route: route.fulfill(
            content_type="text/html",
            body="<p id=code>"
            + urllib.parse.parse_qs(urllib.parse.urlsplit(route.request.url).query)["code"][0]
            + "</p>",
        ),
    )
    page = context.new_page()
    remote = f"http://{REMOTE_HOST}:{server.port}"
    log_in(page, server, base=remote)
    page.goto(remote + "/admin/credentials/new")
    page.fill("#signin-label", "remote")
    page.click("button:text('Sign in with Google')")
    assert page.url == remote + "/admin/oauth/gemini_cli/start"
    shot(page, "sign-in-paste")
    with context.expect_page() as opened:
        page.click("#google-sign-in")
    google = opened.value
    google.wait_for_selector("#code")
    code = google.inner_text("#code")
    google.close()
    page.fill("#code", code)
    page.click("text=Add the account")
    cred = flash_id(page, "gemini_cli")
    row = page.locator(f"#credential-{cred}")
    assert "remote" in row.inner_text() and "remote@example.com" in row.inner_text()
    asked = code_assist.oauth_requests[-1]
    assert asked["redirect_uri"] == "https://codeassist.google.com/authcode"
    assert asked["code_verifier"]
    code_assist.login_email = "login@example.com"
    context.close()


def test_wrong_tokens_get_a_page_that_says_to_wait(
    tmp_path: Path, gemini: FakeGeminiAPI, browser: object
) -> None:
    gate = start_gemgate(tmp_path, gemini, {"GEMGATE_ADMIN_TOKEN": TOKEN}).start()
    page = browser.new_page()  # type: ignore[attr-defined]
    try:
        for n in range(5):
            log_in(page, gate, f"guess-{n}")
            assert "not the admin token" in page.inner_text(".field-error")
        log_in(page, gate)
        assert "Too many tries" in page.inner_text("main")
        assert "Wait" in page.inner_text("main")
        assert not page.url.endswith("/admin/")
        shot(page, "too-many-tries")
    finally:
        page.close()
        gate.stop()


def test_a_big_board_shows_a_page_at_a_time_and_finds_a_credential(
    server: Gemgate, browser: object
) -> None:
    admin = AdminClient(server.url + "/admin/api", TOKEN)
    added = [
        admin.post(
            "/credentials",
            json_body={"channel": "gemini", "api_key": f"AIzaBoardKey{n:08d}", "label": f"b-{n}"},
        ).json()["id"]
        for n in range(120)
    ]
    admin.post(f"/credentials/{added[-1]}/disable")
    page = browser.new_page(viewport={"width": 1360, "height": 860})  # type: ignore[attr-defined]
    try:
        log_in(page, server)
        rows = page.locator(".board-row[id^=credential-]")
        assert rows.count() == 100
        total = int(page.inner_text(".pager .meta").split(" of ")[1].split()[0])
        assert total >= 120
        page.click("text=Next →")
        assert rows.count() == total - 100
        assert page.locator(f"#credential-{added[-1]}").get_attribute("data-state") == "disabled"

        # Found by label; an action returns to the same view of the board.
        page.fill("input[name=q]", "b-7")
        page.click("form.filters button")
        assert {r.get_attribute("id") for r in rows.all()} == {
            f"credential-{added[n]}" for n in (7, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79)
        }
        page.locator(f"#credential-{added[70]}").locator("button:text('Disable')").click()
        assert "q=b-7" in page.url and f"Disabled credential {added[70]}" in page.inner_text(
            ".flash"
        )
        # The tally filters by state.
        page.click(".tally .disabled a")
        assert {r.get_attribute("data-state") for r in rows.all()} == {"disabled"}
    finally:
        page.close()
        for cred in added:
            admin.delete(f"/credentials/{cred}")


def test_a_sign_in_is_finished_by_whichever_process_gets_google_s_answer(
    tmp_path: Path, gemini: FakeGeminiAPI, browser: object, code_assist: FakeCodeAssist
) -> None:
    """Nothing of a sign-in lives in the process that started it (with `--workers N` another
    may get the answer): here the server restarts between the start and Google's answer."""
    code_assist.account("restart@example.com", project="proj-restart")
    code_assist.login_email = "restart@example.com"
    gate = start_gemgate(
        tmp_path, gemini, {"GEMGATE_ADMIN_TOKEN": TOKEN, **code_assist_env(code_assist)}
    ).start()
    page = browser.new_page()  # type: ignore[attr-defined]
    try:
        log_in(page, gate)
        page.goto(gate.url + "/admin/credentials/new")
        csrf = page.input_value("#sign-in-gemini_cli input[name=csrf]")
        started = page.request.post(
            gate.url + "/admin/oauth/gemini_cli/start",
            form={"csrf": csrf, "label": "across"},
            max_redirects=0,
        )
        assert started.status == 303
        google = started.headers["location"]
        assert google.startswith(code_assist.base_url)
        sealed = next(c for c in page.context.cookies() if c["name"] == "gemgate_oauth")
        assert "across" not in sealed["value"] and sealed["httpOnly"]

        gate.stop()
        gate.start()
        page.goto(google)  # Google signs the account in and sends the browser back
        assert "Added credential" in page.inner_text("main")
        page.wait_for_url(lambda url: "/admin/#credential-" in url)
        assert "across" in page.inner_text(".board")
        assert not [c for c in page.context.cookies() if c["name"] == "gemgate_oauth"]
    finally:
        code_assist.login_email = "login@example.com"
        page.close()
        gate.stop()
