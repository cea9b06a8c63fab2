"""A strict, scriptable fake of Code Assist (`cloudcode-pa.googleapis.com/v1internal`, what
Gemini CLI calls) and of Google's OAuth endpoints (token, authorize), on one aiohttp server on
127.0.0.1. Protocol notes: /work/shared/reference/api-protocols.md §B (and §A for the wrapped
generateContent request, whose validation is the Gemini API fake's, made Vertex-strict).

    with FakeCodeAssist() as fake:
        alice = fake.account("alice@example.com", project="proj-alice")
        fake.script(Reply.text("Hi"), key="alice@example.com")
        # GEMGATE_CODE_ASSIST_BASE=fake.base_url, GEMGATE_OAUTH_TOKEN_URL=fake.token_url,
        # GEMGATE_GOOGLE_ACCOUNTS_BASE=fake.base_url

Accounts (`fake.account(...)`) hold what Google knows: the refresh token, the onboarded project
and tier, and how Google treats them (kind: "standard" licensed seat, "free" legacy free tier,
"personal" refused since 2026-06-18, "validation" needing verification; `banned`, `unlicensed`,
`revoked`). Replies are scripted per account e-mail with `script(..., key=email)`.

Standalone (benchmarks): python -m tests.fakes.code_assist --port 9200 --chunks 20
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import secrets
import signal
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.gemini_api import (
    _CONTENT,
    _REQUEST_FIELDS,
    _TYPE_PREFIX,
    AUTO_SIGNATURE,
    FakeGeminiAPI,
    Recorded,
    Reply,
    _ApiError,
    _bad,
    _bare,
    _Call,
    _check,
    _check_semantics,
    _enum,
    _Msg,
    _prompt_tokens,
)

__all__ = ["AUTO_SIGNATURE", "CLIENT_ID", "CLIENT_SECRET", "Account", "FakeCodeAssist", "Reply"]

CLIENT_ID = "681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com"
CLIENT_SECRET = "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"
SCOPES = frozenset(
    {
        "https://www.googleapis.com/auth/cloud-platform",
        "https://www.googleapis.com/auth/userinfo.email",
        "https://www.googleapis.com/auth/userinfo.profile",
    }
)
# What Code Assist serves to the gemini-cli client (B.7); `gemini-3.5-flash` is `gemini-3-flash`
# on this backend. Every id also exists as a separate `_vertex` quota bucket (B.8).
BASE_MODELS = (
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
    "gemini-3-pro-preview",
    "gemini-3-flash-preview",
    "gemini-3.1-pro-preview",
    "gemini-3.1-pro-preview-customtools",
    "gemini-3.1-flash-lite",
    "gemini-3-flash",
)
MODELS = frozenset(BASE_MODELS + tuple(f"{m}_vertex" for m in BASE_MODELS))
UNSUPPORTED_CLIENT = (
    "This client is no longer supported for Gemini Code Assist for individuals. To continue "
    "using Gemini, please migrate to the Antigravity suite of products: https://antigravity.google"
)
TOS_BAN = (
    "This service has been disabled in this account for violation of Terms of Service. If you "
    "believe this is an error, contact gemini-code-assist-user-feedback@google.com."
)
NO_LICENSE = (
    "You do not have a valid license of this product. Please contact your administrator to "
    "request a license. (#3501)"
)
LICENSE_URL = "https://cloud.google.com/gemini/docs/codeassist/request-license"
CAPACITY = "No capacity available for model {model} on the server"
_UNAUTHENTICATED = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
    "or other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project."
)
_FREE_TIER = {
    "id": "free-tier",
    "name": "Gemini Code Assist for individuals",
    "description": "Gemini Code Assist for individuals",
    "userDefinedCloudaicompanionProject": False,
}
_STANDARD_TIER = {
    "id": "standard-tier",
    "name": "Gemini Code Assist Standard",
    "description": "Gemini Code Assist Standard edition",
    "userDefinedCloudaicompanionProject": True,
}

# The wrapped request is a Vertex GenerateContentRequest: the Gemini API's fields (still no `id`
# on function calls), Vertex's safety categories, plus `labels` and `session_id` (B.5).
_VERTEX_SAFETY = _Msg(
    category=_enum(
        "HARM_CATEGORY_UNSPECIFIED",
        "HARM_CATEGORY_HARASSMENT",
        "HARM_CATEGORY_HATE_SPEECH",
        "HARM_CATEGORY_SEXUALLY_EXPLICIT",
        "HARM_CATEGORY_DANGEROUS_CONTENT",
        "HARM_CATEGORY_CIVIC_INTEGRITY",
        "HARM_CATEGORY_IMAGE_HATE",
        "HARM_CATEGORY_IMAGE_DANGEROUS_CONTENT",
        "HARM_CATEGORY_IMAGE_HARASSMENT",
        "HARM_CATEGORY_IMAGE_SEXUALLY_EXPLICIT",
        "HARM_CATEGORY_JAILBREAK",
    ),
    threshold=_enum(
        "HARM_BLOCK_THRESHOLD_UNSPECIFIED",
        "BLOCK_LOW_AND_ABOVE",
        "BLOCK_MEDIUM_AND_ABOVE",
        "BLOCK_ONLY_HIGH",
        "BLOCK_NONE",
        "OFF",
    ),
    method=_enum("HARM_BLOCK_METHOD_UNSPECIFIED", "SEVERITY", "PROBABILITY"),
)
_INNER_REQUEST = _Msg(
    **{**_REQUEST_FIELDS, "safetySettings": [_VERTEX_SAFETY]},
    labels="struct",
    sessionId="string",
)
_WRAPPER = _Msg(
    model="string",
    project="string",
    userPromptId="string",
    request="struct",
    enabledCreditTypes=["string"],
)
# countTokens takes only the model and the contents (B.5); thought parts are refused.
_COUNT_WRAPPER = _Msg(request=_Msg(model="string", contents=[_CONTENT]))
_METADATA = _Msg(
    ideType=_enum(
        "IDE_UNSPECIFIED",
        "VSCODE",
        "INTELLIJ",
        "VSCODE_CLOUD_WORKSTATION",
        "INTELLIJ_CLOUD_WORKSTATION",
        "CLOUD_SHELL",
        "GEMINI_CLI",
    ),
    platform=_enum(
        "PLATFORM_UNSPECIFIED",
        "DARWIN_AMD64",
        "DARWIN_ARM64",
        "LINUX_AMD64",
        "LINUX_ARM64",
        "WINDOWS_AMD64",
    ),
    pluginType=_enum(
        "PLUGIN_UNSPECIFIED", "CLOUD_CODE", "GEMINI", "AIPLUGIN_INTELLIJ", "AIPLUGIN_STUDIO"
    ),
    duetProject="string",
    ideVersion="string",
    pluginVersion="string",
    updateChannel="string",
    ideName="string",
)
_LOAD = _Msg(
    cloudaicompanionProject="string",
    metadata=_METADATA,
    mode=_enum("MODE_UNSPECIFIED", "FULL_ELIGIBILITY_CHECK", "HEALTH_CHECK"),
)
_ONBOARD = _Msg(tierId="string", cloudaicompanionProject="string", metadata=_METADATA)


@dataclass
class Account:
    email: str
    refresh_token: str
    # standard | free | personal | validation (see the module docstring)
    kind: str = "standard"
    # The onboarded project; None means loadCodeAssist reports no current tier.
    project: str | None = None
    tier: str | None = None
    # Projects with a Code Assist licence this account may onboard to (standard tier).
    licensed_projects: set[str] = field(default_factory=set)
    revoked: bool = False
    # The OAuth client that minted the refresh token, when not gemini-cli's (Antigravity CLI
    # writes the same oauth_creds.json, §B.1).
    minted_by: str | None = None
    banned: bool = False
    unlicensed: bool = False
    validation_url: str = "https://accounts.google.com/signin/continue?sarp=1&scc=1&plt=fake"
    refreshes: int = 0
    # remainingFraction per model for retrieveUserQuota.
    quota: dict[str, float] = field(default_factory=dict)
    quota_reset: str = ""


@dataclass
class _Operation:
    name: str
    account: str
    tier: str
    project: str
    polls_left: int


@dataclass
class _Grant:
    email: str
    redirect_uri: str
    challenge: str | None
    offline: bool = True
    issued: float = field(default_factory=time.time)


# Gemini CLI's client is an installed app: Google sends a browser back only to a loopback
# address (any port and path, plain http) or to its own page that shows the code (§B.1).
PASTE_REDIRECT = "https://codeassist.google.com/authcode"
# How long an authorization code can be traded (Google's are short-lived).
CODE_SECONDS = 600.0


def installed_app_redirect(uri: str) -> bool:
    if uri == PASTE_REDIRECT:
        return True
    parts = urllib.parse.urlsplit(uri)
    return (
        parts.scheme == "http"
        and parts.hostname in ("127.0.0.1", "localhost", "::1")
        and not parts.fragment
    )


def id_token(email: str, audience: str = CLIENT_ID) -> str:
    """An unsigned JWT-shaped id_token: gateways read `email` from it, never verify it."""

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")

    now = int(time.time())
    claims = {
        "iss": "https://accounts.google.com",
        "aud": audience,
        "azp": audience,
        "sub": str(abs(hash(email)) % 10**20),
        "email": email,
        "email_verified": True,
        "iat": now,
        "exp": now + 3600,
    }
    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.{secrets.token_urlsafe(32)}"


def quota_error(
    reason: str,
    *,
    model: str = "gemini-2.5-pro",
    retry_delay: str | None = None,
    reset_delay: str | None = None,
    reset_at: str | None = None,
    message: str | None = None,
) -> Reply:
    """A Code Assist 429 in the shapes of §B.6: ErrorInfo (reason, quotaResetDelay,
    quotaResetTimeStamp) and, when given, RetryInfo."""
    metadata: dict[str, str] = {"uiMessage": "true", "model": model}
    if reset_delay:
        metadata["quotaResetDelay"] = reset_delay
    if reset_at:
        metadata["quotaResetTimeStamp"] = reset_at
    details: list[dict[str, Any]] = [
        {
            "@type": _TYPE_PREFIX + "ErrorInfo",
            "reason": reason,
            "domain": "cloudcode-pa.googleapis.com",
            "metadata": metadata,
        }
    ]
    if retry_delay:
        details.append({"@type": _TYPE_PREFIX + "RetryInfo", "retryDelay": retry_delay})
    if message is None:
        if reason.startswith("MODEL_CAPACITY"):
            message = CAPACITY.format(model=model)
        else:
            message = "You have exhausted your capacity on this model."
            if reset_delay or retry_delay:
                message += f" Your quota will reset after {reset_delay or retry_delay}."
    return Reply.error(429, message, status_name="RESOURCE_EXHAUSTED", details=details)


class FakeCodeAssist(FakeGeminiAPI):
    def __init__(self, *, stream_chunks: int = 3, host: str = "127.0.0.1") -> None:
        super().__init__(keys=(), stream_chunks=stream_chunks, host=host)
        self.accounts: dict[str, Account] = {}
        # access token -> (account e-mail, expiry as time.time())
        self.tokens: dict[str, tuple[str, float]] = {}
        self.operations: dict[str, _Operation] = {}
        self.grants: dict[str, _Grant] = {}
        # How many GETs an onboarding operation answers `done: false` before it is done.
        self.onboard_polls = 1
        # Seconds the token endpoint takes to refresh: a window for concurrent requests.
        self.refresh_delay = 0.0
        # Who "signs in" at the authorize endpoint; None answers error=access_denied.
        self.login_email: str | None = "login@example.com"
        self.oauth_requests: list[dict[str, str]] = []

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/token"

    # ---- accounts -----------------------------------------------------------------------

    def account(
        self,
        email: str,
        *,
        kind: str = "standard",
        project: str | None = None,
        licensed: tuple[str, ...] = (),
        **flags: Any,
    ) -> Account:
        """Create (or replace) an account. A standard account given a `project` is already
        onboarded there; without one it needs onboarding to one of its `licensed` projects."""
        tier = None
        if project is not None:
            tier = "free-tier" if kind == "free" else "standard-tier"
        account = Account(
            email=email,
            refresh_token="1//0g" + secrets.token_urlsafe(40),
            kind=kind,
            project=project,
            tier=tier,
            licensed_projects=set(licensed) | ({project} if project else set()),
            quota_reset=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 86400)),
            **flags,
        )
        with self._lock:
            self.accounts[email] = account
        return account

    def issue_token(self, email: str, lifetime: float = 3599) -> str:
        token = "ya29.a0" + secrets.token_urlsafe(48)
        with self._lock:
            self.tokens[token] = (email, time.time() + lifetime)
        return token

    def oauth_file(self, email: str, *, expired: bool = False, with_token: bool = True) -> dict:
        """The account's tokens as gemini-cli writes `~/.gemini/oauth_creds.json`."""
        account = self.accounts[email]
        data: dict[str, Any] = {
            "refresh_token": account.refresh_token,
            "scope": " ".join(sorted(SCOPES)) + " openid",
            "token_type": "Bearer",
            "id_token": id_token(email),
        }
        if with_token:
            lifetime = -60 if expired else 3599
            data["access_token"] = self.issue_token(email, lifetime)
            data["expiry_date"] = int((time.time() + lifetime) * 1000)
        return data

    def expire_tokens(self, email: str | None = None) -> None:
        """Make Google forget issued access tokens (of one account): the next call gets 401."""
        with self._lock:
            for token, (owner, _) in list(self.tokens.items()):
                if email in (None, owner):
                    self.tokens[token] = (owner, 0.0)

    def reset(self) -> None:
        """Clear scripts and records; accounts and their tokens stay (a running gemgate may
        hold them), so tests that change an account use one of their own."""
        super().reset()
        with self._lock:
            self.oauth_requests.clear()
        self.onboard_polls, self.refresh_delay, self.login_email = 1, 0.0, "login@example.com"

    # ---- HTTP ---------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/token":
            return await self._token(request)
        if request.path == "/o/oauth2/v2/auth":
            return self._authorize(request)
        raw = await request.read()
        body: Any = None
        bad_json = False
        if raw:
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                bad_json = True
        path = request.path
        method = path.removeprefix("/v1internal:") if path.startswith("/v1internal:") else None
        operation = path.removeprefix("/v1internal/") if path.startswith("/v1internal/") else None
        recorded = Recorded(
            method=request.method,
            path=path,
            query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            api_key=None,
            model=None,
            action=method or ("operation" if operation else None),
        )
        self.requests.append(recorded)
        stream = method == "streamGenerateContent"
        sse = request.query.get("alt") == "sse"
        try:
            if method is None and operation is None:
                raise _ApiError(404, f"Requested entity was not found: {path}")
            email = self._bearer(request)
            recorded.api_key = email
            if operation is not None:
                if request.method != "GET":
                    raise _ApiError(404, "Requested entity was not found.")
                return self._json(self._poll(email, operation))
            if request.method != "POST":
                raise _ApiError(404, f"Requested entity was not found: {path}")
            if bad_json or not isinstance(body, dict):
                raise _bad("Invalid JSON payload received. Unexpected token.", "")
            if method == "loadCodeAssist":
                return self._json(self._load(email, body))
            if method == "onboardUser":
                return self._json(self._onboard(email, body))
            if method == "retrieveUserQuota":
                return self._json(self._quota(email, body))
            if method == "countTokens":
                return self._json(self._count(body, recorded))
            if method in ("generateContent", "streamGenerateContent"):
                return await self._wrapped_generate(request, email, body, recorded, stream, sse)
            raise _ApiError(404, f"Requested entity was not found: {path}")
        except _ApiError as err:
            return self._json(err.body(), status=err.code)

    def _bearer(self, request: web.Request) -> str:
        header = request.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else ""
        with self._lock:
            found = self.tokens.get(token)
        if not found or found[1] <= time.time():
            raise _ApiError(401, _UNAUTHENTICATED)
        return found[0]

    def _account(self, email: str) -> Account:
        account = self.accounts.get(email)
        if account is None:  # a token outlived its account (reset between tests)
            raise _ApiError(401, _UNAUTHENTICATED)
        return account

    # ---- setup: loadCodeAssist, onboardUser, operations --------------------------------

    def _load(self, email: str, body: dict[str, Any]) -> dict[str, Any]:
        _check(_LOAD, body, "")
        account = self._account(email)
        if account.kind == "validation":
            return {
                "ineligibleTiers": [
                    {
                        "reasonCode": "VALIDATION_REQUIRED",
                        "reasonMessage": "Verify your account to continue.",
                        "tierId": "standard-tier",
                        "tierName": "Gemini Code Assist Standard",
                        "validationUrl": account.validation_url,
                    }
                ]
            }
        standard = {**_STANDARD_TIER, "isDefault": account.kind != "free"}
        free = {**_FREE_TIER, "isDefault": account.kind == "free"}
        answer: dict[str, Any] = {}
        if account.kind == "personal":
            answer["allowedTiers"] = [standard]
            answer["ineligibleTiers"] = [
                {
                    "reasonCode": "UNSUPPORTED_CLIENT",
                    "reasonMessage": UNSUPPORTED_CLIENT,
                    "tierId": "free-tier",
                    "tierName": _FREE_TIER["name"],
                }
            ]
            return answer
        answer["allowedTiers"] = [free, standard] if account.kind == "free" else [standard]
        if account.project is not None and account.tier is not None:
            current = free if account.tier == "free-tier" else standard
            answer["currentTier"] = {**current, "hasOnboardedPreviously": True}
            answer["cloudaicompanionProject"] = account.project
            if account.tier == "standard-tier":
                answer["paidTier"] = {"id": "standard-tier", "name": _STANDARD_TIER["name"]}
        return answer

    def _onboard(self, email: str, body: dict[str, Any]) -> dict[str, Any]:
        req = _check(_ONBOARD, body, "")
        account = self._account(email)
        with self._lock:
            # Older clients re-POST onboardUser instead of polling the operation (B.4).
            for op in self.operations.values():
                if op.account == email and op.polls_left >= 0:
                    return self._advance(op)
        tier = req.get("tierId")
        project = req.get("cloudaicompanionProject")
        if account.kind in ("personal", "validation"):
            raise _ApiError(
                400, f"User is not eligible for tier {tier}.", status="FAILED_PRECONDITION"
            )
        if tier == "free-tier":
            if account.kind != "free":
                raise _ApiError(400, "Tier free-tier is not allowed.", status="FAILED_PRECONDITION")
            if project:
                raise _ApiError(400, "Precondition Failed", status="FAILED_PRECONDITION")
            project = "managed-" + secrets.token_hex(4)
        elif tier == "standard-tier":
            if not project:
                raise _bad(
                    "cloudaicompanionProject is required for tier standard-tier",
                    "cloudaicompanion_project",
                )
            if project not in account.licensed_projects:
                raise _subscription_required()
        else:
            raise _bad(f"Unknown tier {tier!r}.", "tier_id")
        op = _Operation(
            name=f"operations/{secrets.token_hex(6)}",
            account=email,
            tier=str(tier),
            project=project,
            polls_left=self.onboard_polls,
        )
        with self._lock:
            self.operations[op.name] = op
        return {"name": op.name, "done": False} if op.polls_left else self._advance(op)

    def _poll(self, email: str, name: str) -> dict[str, Any]:
        with self._lock:
            op = self.operations.get(name)
            if op is None or op.account != email:
                raise _ApiError(404, f"Operation {name} not found.")
            return self._advance(op)

    def _advance(self, op: _Operation) -> dict[str, Any]:
        if op.polls_left > 0:
            op.polls_left -= 1
            return {"name": op.name, "done": False}
        op.polls_left = -1
        account = self.accounts[op.account]
        account.project, account.tier = op.project, op.tier
        return {
            "name": op.name,
            "done": True,
            "response": {
                "@type": "type.googleapis.com/google.internal.cloud.code.v1internal."
                "OnboardUserResponse",
                "cloudaicompanionProject": {"id": op.project, "name": op.project},
            },
        }

    def _quota(self, email: str, body: dict[str, Any]) -> dict[str, Any]:
        req = _check(_Msg(project="string", userAgent="string"), body, "")
        account = self._account(email)
        self._check_project(account, req.get("project"))
        return {
            "buckets": [
                {
                    "modelId": model,
                    "tokenType": "REQUESTS",
                    "remainingFraction": account.quota.get(model, 1.0),
                    "resetTime": account.quota_reset,
                }
                for model in sorted(MODELS)
            ]
        }

    @staticmethod
    def _check_project(account: Account, project: Any) -> None:
        if not project:
            raise _bad("project is required", "project")
        if project != account.project:
            raise _ApiError(
                403,
                f"Permission denied on resource project {project}.",
                details=[
                    {
                        "@type": _TYPE_PREFIX + "ErrorInfo",
                        "reason": "CONSUMER_INVALID",
                        "domain": "googleapis.com",
                        "metadata": {"consumer": f"projects/{project}"},
                    }
                ],
            )

    # ---- generation ---------------------------------------------------------------------

    async def _wrapped_generate(
        self,
        request: web.Request,
        email: str,
        body: dict[str, Any],
        recorded: Recorded,
        stream: bool,
        sse: bool,
    ) -> web.StreamResponse:
        wrapper = _check(_WRAPPER, body, "")
        account = self._account(email)
        model = wrapper.get("model")
        if not model:
            raise _bad("model is required", "model")
        if model.startswith("models/"):
            raise _bad(f"Invalid model name {model!r}: send the bare id.", "model")
        recorded.model = model
        self._check_project(account, wrapper.get("project"))
        if account.banned:
            raise _ApiError(403, TOS_BAN)
        if account.unlicensed:
            raise _subscription_required()
        if model not in MODELS:
            raise _ApiError(404, f"Requested entity was not found. Model {model} is unknown.")
        inner = wrapper.get("request")
        if inner is None:
            raise _bad("request is required", "request")
        req = _check(_INNER_REQUEST, inner, "request")
        if account.quota:
            account.quota[model] = max(0.0, account.quota.get(model, 1.0) - 0.01)
        return await self._answer(request, req, model, email, stream, sse)

    async def _stream(
        self,
        request: web.Request,
        call: _Call,
        chunks: list[dict[str, Any]],
        delay: float,
        **options: Any,
    ) -> web.StreamResponse:
        wrapped = [_wrap(chunk, call) for chunk in chunks]
        return await super()._stream(request, call, wrapped, delay, **options)

    def _unary(self, response: dict[str, Any], call: _Call) -> Any:
        return _wrap(response, call)

    def _count(self, body: dict[str, Any], recorded: Recorded) -> dict[str, Any]:
        req = _check(_COUNT_WRAPPER, body, "")
        inner = req.get("request") or {}
        model = _bare(str(inner.get("model") or ""))
        if not str(inner.get("model") or "").startswith("models/"):
            raise _bad("request.model must be models/{model}", "request.model")
        recorded.model = model
        if model not in MODELS:
            raise _ApiError(404, f"Requested entity was not found. Model {model} is unknown.")
        _check_semantics(inner)
        for content in inner["contents"]:
            for part in content["parts"]:
                if part.get("thought") or part.get("thoughtSignature"):
                    raise _bad("Thought parts are not supported for counting tokens.")
        return {"totalTokens": sum(_prompt_tokens(inner).values())}

    # ---- OAuth --------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        if request.method != "POST":
            return self._oauth_error(405, "invalid_request", "Use POST.")
        if not request.content_type.startswith("application/x-www-form-urlencoded"):
            return self._oauth_error(400, "invalid_request", "Form-encoded body expected.")
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.oauth_requests.append(form)
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return self._oauth_error(401, "invalid_client", "The OAuth client was not found.")
        grant = form.get("grant_type")
        if grant == "refresh_token":
            with self._lock:
                account = next(
                    (
                        a
                        for a in self.accounts.values()
                        if a.refresh_token == form.get("refresh_token")
                    ),
                    None,
                )
                if account is not None and not account.revoked:
                    account.refreshes += 1
            if account is None or account.revoked:
                return self._oauth_error(400, "invalid_grant", "Token has been expired or revoked.")
            if account.minted_by not in (None, form["client_id"]):
                return self._oauth_error(400, "unauthorized_client", "Unauthorized")
            if self.refresh_delay:
                await asyncio.sleep(self.refresh_delay)
            return self._json(self._tokens_for(account.email, with_refresh=False))
        if grant == "authorization_code":
            with self._lock:
                issued = self.grants.pop(form.get("code", ""), None)
            if issued is None or issued.issued + CODE_SECONDS < time.time():
                return self._oauth_error(400, "invalid_grant", "Malformed auth code.")
            if form.get("redirect_uri") != issued.redirect_uri:
                return self._oauth_error(400, "redirect_uri_mismatch", "Bad Request")
            if issued.challenge is not None:
                verifier = form.get("code_verifier", "")
                if not verifier:
                    return self._oauth_error(400, "invalid_request", "Missing code verifier.")
                digest = hashlib.sha256(verifier.encode()).digest()
                if base64.urlsafe_b64encode(digest).decode().rstrip("=") != issued.challenge:
                    return self._oauth_error(400, "invalid_grant", "Invalid code verifier.")
            if issued.email not in self.accounts:
                self.account(issued.email)
            # A refresh token only for offline access, as Google hands them out.
            return self._json(self._tokens_for(issued.email, with_refresh=issued.offline))
        return self._oauth_error(400, "unsupported_grant_type", f"Invalid grant_type: {grant}")

    def _tokens_for(self, email: str, *, with_refresh: bool) -> dict[str, Any]:
        tokens: dict[str, Any] = {
            "access_token": self.issue_token(email),
            "expires_in": 3599,
            "scope": " ".join(sorted(SCOPES)) + " openid",
            "token_type": "Bearer",
            "id_token": id_token(email),
        }
        if with_refresh:
            tokens["refresh_token"] = self.accounts[email].refresh_token
        return tokens

    def _authorize(self, request: web.Request) -> web.Response:
        q = request.query
        problems = []
        if q.get("client_id") != CLIENT_ID:
            problems.append("client_id")
        if q.get("response_type") != "code":
            problems.append("response_type")
        if not set(q.get("scope", "").split()) >= SCOPES:
            problems.append("scope")
        if not q.get("redirect_uri") or not q.get("state"):
            problems.append("redirect_uri/state")
        if q.get("code_challenge") and q.get("code_challenge_method") != "S256":
            problems.append("code_challenge_method")
        if problems:
            return web.Response(status=400, text="Error 400: invalid_request " + ",".join(problems))
        if not installed_app_redirect(q["redirect_uri"]):
            # Shown by Google itself; the browser is never sent to an unregistered address.
            return web.Response(status=400, text="Error 400: redirect_uri_mismatch")
        params = {"state": q["state"]}
        if self.login_email is None:
            params["error"] = "access_denied"
        else:
            code = "4/0A" + secrets.token_urlsafe(30)
            with self._lock:
                self.grants[code] = _Grant(
                    self.login_email,
                    q["redirect_uri"],
                    q.get("code_challenge"),
                    offline=q.get("access_type") == "offline",
                )
            params.update(code=code, scope=" ".join(sorted(SCOPES)))
        location = q["redirect_uri"] + "?" + urllib.parse.urlencode(params)
        raise web.HTTPFound(location)

    def _oauth_error(self, status: int, error: str, description: str) -> web.Response:
        return self._json({"error": error, "error_description": description}, status=status)


def _wrap(chunk: dict[str, Any], call: _Call) -> dict[str, Any]:
    return {"response": chunk, "traceId": call.response_id[:16]}


def _subscription_required() -> _ApiError:
    return _ApiError(
        403,
        NO_LICENSE,
        details=[
            {
                "@type": _TYPE_PREFIX + "ErrorInfo",
                "reason": "SUBSCRIPTION_REQUIRED",
                "domain": "cloudaicompanion.googleapis.com",
                "metadata": {"uiMessage": "true"},
            },
            {
                "@type": _TYPE_PREFIX + "Help",
                "links": [{"description": "Learn more", "url": LICENSE_URL}],
            },
        ],
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the fake Code Assist in the foreground.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9200)
    parser.add_argument("--chunks", type=int, default=3, help="chunks per default stream")
    parser.add_argument("--email", default="bench@example.com")
    parser.add_argument("--project", default="bench-project")
    args = parser.parse_args(argv)
    fake = FakeCodeAssist(stream_chunks=args.chunks, host=args.host)
    fake.start(args.port)
    fake.account(args.email, project=args.project)
    # One line of JSON: the oauth_creds.json a gateway imports to use this account.
    print(orjson.dumps(fake.oauth_file(args.email)).decode(), flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
