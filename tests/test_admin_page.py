"""The admin page in a real headless Chromium (Debian's `chromium`, driven by Playwright): what an
operator does in it, end to end, with a real client sending requests in between. Each page is
saved as a screenshot (see SHOTS)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.conftest import start_gemgate
from tests.fakes.gemini_api import FakeGeminiAPI, Reply
from tests.harness import Gemgate

playwright = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
TOKEN = "page-admin-token-0123456789abcdef"
WORKING_KEY = "AIzaFakeKeyAlpha0001"
FAILING_KEY = "AIzaFakeKeyCharlie03"
# Where each page's screenshot goes: git-ignored by default, so a test run leaves the tree clean;
# GEMGATE_SCREENSHOTS=docs/screenshots refreshes the pictures the README shows.
SHOTS = Path(
    os.environ.get("GEMGATE_SCREENSHOTS") or Path(__file__).resolve().parent / "screenshots"
)
USAGE = {"promptTokenCount": 1200, "candidatesTokenCount": 800, "totalTokenCount": 2000}


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, fake_gemini: FakeGeminiAPI
) -> Iterator[Gemgate]:
    gate = start_gemgate(
        tmp_path_factory.mktemp("admin-page"), fake_gemini, {"GEMGATE_ADMIN_TOKEN": TOKEN}
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
        chromium = driver.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        chromium.close()


def shot(page: object, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


def log_in(page: object, server: Gemgate, token: str = TOKEN) -> None:
    page.goto(server.url + "/admin/")  # type: ignore[attr-defined]
    page.fill("#token", token)  # type: ignore[attr-defined]
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


def test_a_form_from_outside_without_a_session_is_refused(
    server: Gemgate, browser: object
) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    refused = page.request.post(server.url + "/admin/keys", form={"name": "sneaky"})
    assert refused.status == 403
    login = page.request.post(server.url + "/admin/login", form={"token": TOKEN})
    assert login.status == 403 and "CSRF" in login.text()
    page.close()
