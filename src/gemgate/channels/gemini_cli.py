"""The `gemini_cli` channel: Gemini through Code Assist (`cloudcode-pa.googleapis.com/v1internal`),
the backend Gemini CLI uses, with a pool of Google accounts signed in through Gemini CLI's OAuth
client. The body is the shared generateContent JSON inside a `{model, project, user_prompt_id,
request}` wrapper; answers come back as `{response, traceId}`, unwrapped event by event.

Each account needs a Code Assist project (found with `loadCodeAssist`, or provisioned with
`onboardUser`) and a fresh access token; both are learnt once and stored on the credential.
Protocol: reference/api-protocols.md §B.
"""

from __future__ import annotations

import asyncio
import dataclasses
import platform
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from gemgate import errors, ir
from gemgate.channels import _gemini_wire as wire
from gemgate.channels._http import Http, sse_data
from gemgate.channels.base import Exclusive, ModelInfo
from gemgate.channels.code_assist_errors import (
    LICENCE_NOTE,
    classify,
    ineligible_words,
    needs_login,
    refused,
)
from gemgate.channels.google_oauth import TokenRefused, Tokens, TokenUnreachable
from gemgate.config import Settings
from gemgate.ids import new_id
from gemgate.pool import Credential, Failure, UpstreamFailed
from gemgate.store import Store

# What Code Assist serves to Gemini CLI (§B.7). Each id also exists with `_vertex`, a separate
# quota bucket (§B.8); `-thinking` after either turns thoughts on.
MODELS: dict[str, tuple[str, int]] = {
    "gemini-2.5-pro": ("Gemini 2.5 Pro", 65536),
    "gemini-2.5-flash": ("Gemini 2.5 Flash", 65536),
    "gemini-2.5-flash-lite": ("Gemini 2.5 Flash-Lite", 65536),
    "gemini-3-pro-preview": ("Gemini 3 Pro Preview", 65536),
    "gemini-3-flash-preview": ("Gemini 3 Flash Preview", 65536),
    "gemini-3.1-pro-preview": ("Gemini 3.1 Pro Preview", 65536),
    "gemini-3.1-pro-preview-customtools": ("Gemini 3.1 Pro Preview (custom tools)", 65536),
    "gemini-3.1-flash-lite": ("Gemini 3.1 Flash-Lite", 65536),
    "gemini-3.5-flash": ("Gemini 3.5 Flash", 65536),
}
# Gemini CLI's own renames for this backend (CCPA_AI_MODEL_MAPPINGS).
_UPSTREAM_NAMES = {"gemini-3.5-flash": "gemini-3-flash"}
VERTEX_SUFFIX = "_vertex"
THINKING_SUFFIX = "-thinking"
CLI_VERSION = "0.66.0"
_MACHINE = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}
_USER_AGENT_TAIL = (
    f"({platform.system().lower() or 'linux'}; "
    f"{_MACHINE.get(platform.machine().lower(), platform.machine().lower() or 'x64')}; terminal)"
)
_METADATA = {
    "ideType": "IDE_UNSPECIFIED",
    "platform": "PLATFORM_UNSPECIFIED",
    "pluginType": "GEMINI",
}

ONBOARD_TIMEOUT = 120.0


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """A client-facing model name resolved: the id sent upstream, the model whose thinking
    rules apply, and whether thoughts were asked for with the suffix."""

    upstream: str
    base: str
    thinking: bool


def target_of(model: str, extra: frozenset[str] = frozenset()) -> Target | None:
    thinking = model.endswith(THINKING_SUFFIX)
    name = model.removesuffix(THINKING_SUFFIX)
    vertex = name.endswith(VERTEX_SUFFIX)
    base = name.removesuffix(VERTEX_SUFFIX)
    if base not in MODELS and base not in extra:
        return None
    upstream = _UPSTREAM_NAMES.get(base, base) + (VERTEX_SUFFIX if vertex else "")
    return Target(upstream, base, thinking)


_AGENTS: dict[str, str] = {}


def user_agent(model: str) -> str:
    agent = _AGENTS.get(model)
    if agent is None:
        agent = _AGENTS[model] = f"GeminiCLI/{CLI_VERSION}/{model} {_USER_AGENT_TAIL}"
    return agent


class GeminiCLI:
    id = "gemini_cli"

    def __init__(
        self,
        settings: Settings,
        http: Http,
        store: Store | None,
        exclusive: Exclusive | None = None,
    ) -> None:
        self.base = settings.code_assist_base.rstrip("/") + "/v1internal"
        self.http = http
        self.tokens = Tokens(http.via, settings.oauth_token_url, store, exclusive)
        self.poll_interval = settings.onboard_poll_interval
        # One setup (loadCodeAssist, onboarding) at a time per credential. Apart from the token
        # lock, which a setup call may need for a refresh after a 401.
        self._setup_locks: dict[int, asyncio.Lock] = {}
        self.extra_models = frozenset(
            m.strip() for m in settings.code_assist_extra_models.split(",") if m.strip()
        )

    def serves(self, model: str) -> bool:
        return target_of(model, self.extra_models) is not None

    # -- generation ---------------------------------------------------------------------------

    async def generate(
        self, request: ir.Request, model: str, credential: Credential
    ) -> AsyncIterator[ir.Batch]:
        target = self._target(model)
        if target.thinking:
            request = _with_thoughts(request)
        inner = wire.request_body(request, target.base)
        stream = request.stream
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        reader = wire.ChunkReader()
        started = False
        try:
            response = await self._post(credential, method, target.upstream, inner)
            # An answer may stream for minutes; its request (a whole conversation) is sent.
            del request, inner
            try:
                if stream:
                    async for payloads in sse_data(response):
                        batch, failure = reader.batch(payloads, _unwrap)
                        del payloads
                        if batch:
                            started = True
                            yield batch
                        del batch  # not kept while the next read is awaited
                        if failure is not None:
                            raise failure
                else:
                    batch = reader.events(_unwrap(orjson.loads(await response.read())))
                    if batch:
                        started = True
                        yield batch
            finally:
                response.release()
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
            error = _transport_error(exc)
            if started:
                raise error from None
            raise UpstreamFailed(Failure("retry", error, reason=error.message)) from None

    async def count_tokens(self, request: ir.Request, model: str, credential: Credential) -> int:
        target = self._target(model)
        body = wire.request_body(request, target.base)
        payload = {"request": {"model": f"models/{target.upstream}", "contents": _countable(body)}}
        data = await self._call(credential, "countTokens", payload, model=target.upstream)
        return int(data.get("totalTokens", 0))

    async def list_models(self, credential: Credential) -> list[ModelInfo]:
        # Code Assist has no model list; asking is a check that the account is usable.
        await self._ready(credential)
        out = []
        for model_id in [*MODELS, *sorted(self.extra_models - MODELS.keys())]:
            name, output = MODELS.get(model_id, (model_id, None))
            for suffix, label in (("", ""), (VERTEX_SUFFIX, " (Vertex quota)")):
                out.append(
                    ModelInfo(
                        id=model_id + suffix,
                        display_name=name + label,
                        input_token_limit=1048576,
                        output_token_limit=output,
                    )
                )
        return out

    # -- account state ------------------------------------------------------------------------

    async def check(self, credential: Credential) -> dict[str, Any]:
        """Make the account usable now (token, project, onboarding) and say what it is."""
        await self._ready(credential)
        secret = self.tokens.secret(credential.id, credential.secret)
        return {k: secret.get(k) for k in ("email", "tier", "project_id")}

    async def quota(self, credential: Credential) -> list[dict[str, Any]]:
        """retrieveUserQuota's buckets: per model, the fraction left and when it resets."""
        _, project = await self._ready(credential)
        data = await self._call(credential, "retrieveUserQuota", {"project": project})
        return [b for b in data.get("buckets") or () if isinstance(b, dict)]

    async def _ready(self, credential: Credential) -> tuple[str, str]:
        """A fresh access token and the account's project, set up once."""
        secret = self.tokens.secret(credential.id, credential.secret)
        token = self.tokens.fresh(secret)
        if token and secret.get("project_id") and secret.get("tier"):
            return token, str(secret["project_id"])
        token = await self._token(credential)
        lock = self._setup_locks.setdefault(credential.id, asyncio.Lock())
        async with lock:
            secret = self.tokens.secret(credential.id, credential.secret)
            if not (secret.get("project_id") and secret.get("tier")):
                async with self.tokens.exclusive(f"code-assist-setup:{credential.id}"):
                    await self._set_up_once(credential, secret)
            secret = self.tokens.secret(credential.id, credential.secret)
        return self.tokens.fresh(secret) or token, str(secret["project_id"])

    async def _set_up_once(self, credential: Credential, secret: dict[str, Any]) -> None:
        stored = await self.tokens.stored(credential.id)
        if (
            stored
            and stored.get("project_id")
            and stored.get("tier")
            and stored.get("refresh_token") == secret.get("refresh_token")
        ):
            # Another instance set the account up while this one waited.
            learnt = {"project_id": stored["project_id"], "tier": stored["tier"]}
            self.tokens.remember(credential.id, credential.secret, **learnt)
            return
        project, tier = await self._setup(credential, secret)
        await self.tokens.update(credential.id, credential.secret, project_id=project, tier=tier)

    async def _token(self, credential: Credential, stale: str | None = None) -> str:
        try:
            return await self.tokens.access_token(
                credential.id, credential.secret, credential.proxy, stale=stale
            )
        except TokenRefused as exc:
            if exc.needs_login:
                raise UpstreamFailed(needs_login(exc)) from None
            # Not about this account (a wrong GEMGATE_OAUTH_TOKEN_URL, say): try another.
            error = errors.UpstreamError(f"Google's token endpoint refused a refresh: {exc}")
            raise UpstreamFailed(Failure("retry", error, reason=error.message)) from None
        except TokenUnreachable as exc:
            error = errors.UpstreamError(str(exc))
            raise UpstreamFailed(Failure("retry", error, reason=str(exc))) from None

    async def _setup(self, credential: Credential, secret: dict[str, Any]) -> tuple[str, str]:
        """Gemini CLI's setupUser (§B.4): the project and tier of an account, onboarding it
        first when it has none. Refusals invalidate the credential with Google's words."""
        configured = secret.get("project_id") or None
        metadata = dict(_METADATA)
        load: dict[str, Any] = {"metadata": metadata}
        if configured:
            metadata["duetProject"] = configured
            load["cloudaicompanionProject"] = configured
        data = await self._call(credential, "loadCodeAssist", load)
        ineligible = [t for t in data.get("ineligibleTiers") or () if isinstance(t, dict)]
        current = data.get("currentTier")
        if isinstance(current, dict):
            project = _project_id(data.get("cloudaicompanionProject")) or configured
            if not project:
                raise refused(
                    "Google has no Code Assist project for this account. "
                    + (ineligible_words(ineligible) or "")
                    + "Add it again with --project PROJECT_ID.",
                )
            paid = _object(data.get("paidTier"))
            return str(project), str(paid.get("id") or current.get("id") or "standard-tier")
        for refusal in ineligible:
            if refusal.get("reasonCode") == "VALIDATION_REQUIRED":
                raise refused(
                    f"Google wants this account verified: {refusal.get('reasonMessage') or ''} "
                    f"Open {refusal.get('validationUrl') or 'the link Gemini CLI shows'} in a "
                    "browser signed in to this account, then run "
                    f"`gemgate credentials enable {credential.id}`.",
                )
        refused_ids = {t.get("tierId") for t in ineligible}
        allowed = [
            t
            for t in data.get("allowedTiers") or ()
            if isinstance(t, dict) and t.get("id") not in refused_ids
        ]
        tier: dict[str, Any] | None = next(
            (t for t in allowed if t.get("isDefault")), allowed[0] if allowed else None
        )
        if tier is None or (tier.get("userDefinedCloudaicompanionProject") and not configured):
            if any(t.get("reasonCode") == "UNSUPPORTED_CLIENT" for t in ineligible):
                raise refused(ineligible_words(ineligible) + LICENCE_NOTE)
            if tier is None:
                raise refused(
                    ineligible_words(ineligible)
                    or "Google offers this account no Code Assist tier.",
                )
            raise refused(
                ineligible_words(ineligible)
                + f"The {tier.get('name') or tier.get('id')} tier needs a Google Cloud project "
                "with a Gemini Code Assist licence: add the account again with --project "
                "PROJECT_ID.",
            )
        tier_id = str(tier.get("id") or "standard-tier")
        onboard: dict[str, Any] = {"tierId": tier_id, "metadata": dict(_METADATA)}
        if tier_id != "free-tier":
            # The free tier gets a project from Google; naming one fails (§B.4).
            onboard["cloudaicompanionProject"] = configured
            onboard["metadata"]["duetProject"] = configured
        operation = await self._call(credential, "onboardUser", onboard)
        deadline = time.monotonic() + ONBOARD_TIMEOUT
        while not operation.get("done"):
            if time.monotonic() > deadline:
                error = errors.Unavailable("Google is still setting up a gemini_cli account")
                raise UpstreamFailed(Failure("retry", error, reason=error.message))
            await asyncio.sleep(self.poll_interval)
            name = operation.get("name")
            if name:
                operation = await self._call(credential, str(name), None)
            else:
                operation = await self._call(credential, "onboardUser", onboard)
        project = (
            _project_id(_object(operation.get("response")).get("cloudaicompanionProject"))
            or configured
        )
        if not project:
            raise refused("Google onboarded this account but named no project.")
        return str(project), tier_id

    def _current(self, credential: Credential) -> Credential:
        """The credential with the tokens in use now (a refresh may be newer than the pool's
        copy), so that what Google echoes back is scrubbed of them too."""
        secret = self.tokens.secret(credential.id, credential.secret)
        return dataclasses.replace(credential, secret=secret)

    def _target(self, model: str) -> Target:
        target = target_of(model, self.extra_models)
        if target is None:
            error = errors.NotFound(
                f"model {model!r} is not served by the gemini_cli channel",
                param="model",
                code="model_not_found",
            )
            raise UpstreamFailed(Failure("final", error, reason=error.message))
        return target

    # -- HTTP -----------------------------------------------------------------------------------

    async def _post(
        self, credential: Credential, method: str, model: str, inner: dict[str, Any]
    ) -> aiohttp.ClientResponse:
        """POST a generate call in its wrapper and return the open 200 answer; a 401 refreshes
        the token and tries once more. Any other answer is raised as the pool's classification."""
        token, project = await self._ready(credential)
        body = orjson.dumps(
            {"model": model, "project": project, "user_prompt_id": new_id(), "request": inner}
        )
        headers = _headers(token, model)
        if method[0] == "s":  # streamGenerateContent
            headers["accept"] = "text/event-stream"
        url = f"{self.base}:{method}"
        session, proxy = self.http.via(credential.proxy)
        response = await session.post(url, data=body, headers=headers, proxy=proxy)
        if response.status == 401:
            response.release()
            headers["authorization"] = "Bearer " + await self._token(credential, token)
            response = await session.post(url, data=body, headers=headers, proxy=proxy)
        if response.status != 200:
            try:
                raw = await response.read()
            finally:
                response.release()
            raise UpstreamFailed(classify(response.status, raw, self._current(credential), model))
        return response

    async def _call(
        self,
        credential: Credential,
        method: str,
        body: dict[str, Any] | None,
        *,
        model: str = "gemini-2.5-pro",
    ) -> dict[str, Any]:
        """One JSON call: `:method` with a body (POST), or an operation name without (GET)."""
        token = await self._token(credential)
        url = f"{self.base}:{method}" if body is not None else f"{self.base}/{method}"
        data = orjson.dumps(body) if body is not None else None
        session, proxy = self.http.via(credential.proxy)
        try:
            for attempt in (1, 2):
                async with session.request(
                    "POST" if body is not None else "GET",
                    url,
                    data=data,
                    headers=_headers(token, model),
                    proxy=proxy,
                ) as response:
                    raw = await response.read()
                    if response.status == 401 and attempt == 1:
                        token = await self._token(credential, token)
                        continue
                    if response.status != 200:
                        raise UpstreamFailed(
                            classify(response.status, raw, self._current(credential), model)
                        )
                    answer = orjson.loads(raw)
                    return answer if isinstance(answer, dict) else {}
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
            error = _transport_error(exc)
            raise UpstreamFailed(Failure("retry", error, reason=error.message)) from None
        raise AssertionError("unreachable")


# -- wire helpers -------------------------------------------------------------------------------


def _headers(token: str, model: str) -> dict[str, str]:
    return {
        "authorization": f"Bearer {token}",
        "content-type": "application/json",
        "user-agent": user_agent(model),
    }


def _unwrap(chunk: Any) -> dict[str, Any]:
    """The Gemini response inside a Code Assist answer; without one it had no candidates."""
    if not isinstance(chunk, dict):
        return {}
    inner = chunk.get("response")
    if not isinstance(inner, dict):
        return {"error": chunk["error"]} if isinstance(chunk.get("error"), dict) else {}
    if "responseId" not in inner and chunk.get("traceId"):
        inner["responseId"] = chunk["traceId"]
    return inner


def _with_thoughts(request: ir.Request) -> ir.Request:
    thinking = request.thinking or ir.Thinking()
    return dataclasses.replace(
        request, thinking=dataclasses.replace(thinking, include_thoughts=True)
    )


def _countable(body: dict[str, Any]) -> list[dict[str, Any]]:
    """countTokens takes only contents, and no thought parts (§B.5): thoughts count as plain
    text, and the system instruction is counted as text at the start."""
    contents = [
        {
            "role": content["role"],
            "parts": [
                {k: v for k, v in part.items() if k not in ("thought", "thoughtSignature")}
                for part in content["parts"]
            ],
        }
        for content in body["contents"]
    ]
    system = (body.get("systemInstruction") or {}).get("parts") or []
    if system:
        if contents and contents[0]["role"] == "user":
            contents[0]["parts"] = [*system, *contents[0]["parts"]]
        else:
            contents.insert(0, {"role": "user", "parts": list(system)})
    return contents


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _project_id(value: Any) -> str | None:
    # A string in loadCodeAssist, an object {id, name} in the onboarding operation (§B.4).
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _transport_error(exc: BaseException) -> errors.GatewayError:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return errors.UpstreamTimeout("Code Assist did not answer in time")
    if isinstance(exc, orjson.JSONDecodeError):
        return errors.UpstreamError("Code Assist sent a reply that is not JSON")
    return errors.UpstreamError(f"could not reach Code Assist: {type(exc).__name__}")
