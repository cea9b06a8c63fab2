"""The `gemini` channel: the official Gemini API (`generativelanguage.googleapis.com/v1beta`)
with a pool of API keys. The key travels in `x-goog-api-key`, never in the URL."""

from __future__ import annotations

import asyncio
import fnmatch
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from gemgate import errors, ir, model_names, sse
from gemgate.channels import _gemini_wire as wire
from gemgate.channels import _imagen_wire as imagen
from gemgate.channels._http import Http, sse_data
from gemgate.channels.base import ModelInfo
from gemgate.channels.gemini_files import FilesAPI
from gemgate.config import Settings
from gemgate.pool import Credential, Failure, UpstreamFailed

# A 429 that says nothing about when to come back.
DEFAULT_COOLDOWN = 60.0
# A daily quota or a model the key's tier does not have at all.
LONG_COOLDOWN = 3600.0
_SERVED_PREFIXES = ("gemini-", "gemma-", "learnlm-", "imagen-")
# Inputs per batchEmbedContents call: Google refuses larger batches.
EMBED_BATCH = 100
# Names the Gemini API does not know: Code Assist's separate quota bucket and the gateway's
# thinking switch, both the gemini_cli channel's.
_OTHER_CHANNELS_SUFFIXES = ("_vertex", "-thinking")


class GeminiAPI:
    id = "gemini"
    # Media too large to go inline go up through the Files API (see gemini_files), so media
    # fetched for a request do not count against the request size limit.
    uploads_large_media = True

    def __init__(self, settings: Settings, http: Http) -> None:
        self.base = settings.gemini_api_base.rstrip("/") + "/v1beta"
        self.http = http
        self._models: list[ModelInfo] = []
        # The same by id: what a model supports is looked up on every request.
        self._by_id: dict[str, ModelInfo] = {}
        self._models_at = 0.0
        self._models_ttl = settings.models_cache_ttl
        self.files = FilesAPI(settings, http, classify)
        self._speech_only: dict[str, bool] = {}
        self._speech_models = tuple(
            p.strip() for p in settings.speech_models.split(",") if p.strip()
        )

    def serves(self, model: str) -> bool:
        if model.endswith(_OTHER_CHANNELS_SUFFIXES):
            return False
        return model.startswith(_SERVED_PREFIXES) or model in self._by_id

    def speech_only(self, model: str) -> bool:
        """Whether `model` only speaks (a TTS model), by the operator's `speech_models`."""
        found = self._speech_only.get(model)
        if found is None:
            found = any(fnmatch.fnmatchcase(model, p) for p in self._speech_models)
            if len(self._speech_only) < 1024:  # model names are few; never grow unbounded
                self._speech_only[model] = found
        return found

    async def generate(
        self, request: ir.Request, model: str, credential: Credential
    ) -> AsyncIterator[ir.Batch]:
        if imagen.is_imagen(model, self._methods(model)):
            if batch := await self._predict(request, model, credential):
                yield batch
            return
        if self.speech_only(model):
            payload = wire.speech_request_body(request, model)
        else:
            g = request.generation
            if g.speech is not None or "AUDIO" in (g.response_modalities or ()):
                # Only speech models answer in audio; anything else would answer in text.
                raise errors.InvalidRequest(
                    f"{model} does not speak: audio output comes from the speech models "
                    "(GEMGATE_SPEECH_MODELS), such as gemini-2.5-flash-preview-tts",
                    param="audio",
                )
            payload = wire.request_body(request, model)
        stream = request.stream
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        url = self._model_url(model, method)
        reader = wire.ChunkReader()
        started = False
        try:
            async with await self._post_placed(url, payload, credential) as response:
                # An answer may stream for minutes; its request (a whole conversation) is sent.
                del request, payload
                if stream:
                    async for payloads in sse_data(response):
                        batch, failure = reader.batch(payloads)
                        del payloads
                        if batch:
                            started = True
                            yield batch
                        del batch  # not kept while the next read is awaited
                        if failure is not None:
                            raise failure
                else:
                    batch = reader.events(orjson.loads(await response.read()))
                    if batch:
                        started = True
                        yield batch
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
            error = _transport_error(exc)
            if started:
                raise error from None
            raise UpstreamFailed(Failure("retry", error, reason=error.message)) from None

    async def _post_placed(
        self, url: str, payload: dict[str, Any], credential: Credential
    ) -> aiohttp.ClientResponse:
        """POST a generate body, its large media through the Files API; a 200 response, or
        `UpstreamFailed`. When Google no longer knows a file remembered as uploaded (deleted or
        expired early), it is uploaded again, once, rather than blamed on the credential."""
        for last in (False, True):
            moved = await self.files.place(payload, credential)
            response = await self._post(url, _dumps(payload), credential)
            if response.status == 200:
                return response
            raw = await response.read()
            response.release()
            if moved and not last and self.files.forgotten(raw):
                self.files.unplace(moved, credential)
                continue
            raise UpstreamFailed(classify(response.status, raw, credential))
        raise AssertionError("unreachable")

    async def _predict(
        self, request: ir.Request, model: str, credential: Credential
    ) -> list[ir.Event]:
        """An Imagen model: one unary `:predict` call."""
        try:
            body = _dumps(imagen.request_body(request, model))
        except errors.GatewayError as error:
            raise UpstreamFailed(Failure("final", error)) from None
        data = await self._call_json(self._model_url(model, "predict"), body, credential)
        return imagen.events(data if isinstance(data, dict) else {}, model)

    def _methods(self, model: str) -> list[str] | None:
        info = self._by_id.get(model)
        if info is None:
            return None
        return info.raw.get("supportedGenerationMethods") or []  # type: ignore[no-any-return]

    async def count_tokens(self, request: ir.Request, model: str, credential: Credential) -> int:
        body = wire.request_body(request, model)
        body.pop("safetySettings", None)
        try:
            await self.files.place(body, credential)
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = _transport_error(exc)
            raise UpstreamFailed(Failure("retry", error, reason=error.message)) from None
        payload = _dumps({"generateContentRequest": {"model": f"models/{model}", **body}})
        data = await self._call_json(self._model_url(model, "countTokens"), payload, credential)
        return int(data.get("totalTokens", 0))

    async def passthrough(
        self, model: str, action: str, body: bytes, credential: Credential
    ) -> AsyncIterator[bytes]:
        """The fast path for clients that speak the Gemini API: the body goes up untouched and
        the answer comes back as Google wrote it. Only the key (ours, in a header) and the model
        (in the URL) differ from what the client sent. Streams are always asked for as SSE
        (whatever form the client wants) and handed on as Google framed them, in blocks of
        whole events, so the client never gets half an event, even when the upstream
        connection breaks."""
        stream = action == "streamGenerateContent"
        url = self._model_url(model, action) + ("?alt=sse" if stream else "")
        if action == "countTokens" and b"generateContentRequest" in body:
            body = _count_body_for(body, model)
        elif action == "batchEmbedContents":
            body = _embed_batch_for(body, model)
        started = False
        try:
            async with self._post(url, body, credential) as response:
                del body  # sent: an answer may stream for minutes
                if response.status != 200:
                    raw = await response.read()
                    failure = classify(response.status, raw, credential)
                    google = failure.action in ("final", "retry")
                    if google and wire.parse_google_error(response.status, raw).structured:
                        # The client's own request is at fault (or Google's): show it Google's
                        # words; never the ones about our credential. A body that is not
                        # Google's JSON (a proxy's page) keeps our wrapping in the client's shape.
                        failure.error.google_body = scrub(
                            raw.decode("utf-8", "replace"), credential
                        ).encode()
                    raise UpstreamFailed(failure)
                if not stream:
                    raw = await response.read()
                    started = True
                    yield raw
                    return
                async for events in sse.whole_events(response.content.iter_any()):
                    started = True
                    yield events
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = _transport_error(exc)
            if started:
                raise error from None
            raise UpstreamFailed(Failure("retry", error, reason=error.message)) from None

    async def embed(
        self, request: ir.EmbedRequest, model: str, credential: Credential
    ) -> ir.Embeddings:
        """Vectors through `batchEmbedContents`, at most `EMBED_BATCH` inputs per call (Google's
        limit), the calls of one request on one credential."""
        url = f"{self.base}/models/{model}:batchEmbedContents"
        batches = [
            request.inputs[i : i + EMBED_BATCH] for i in range(0, len(request.inputs), EMBED_BATCH)
        ]
        answers = await asyncio.gather(
            *(
                self._call_json(url, orjson.dumps(_embed_body(request, model, texts)), credential)
                for texts in batches
            )
        )
        vectors: list[list[float]] = []
        usage = ir.Usage()
        for texts, answer in zip(batches, answers, strict=True):
            found = [e.get("values") or [] for e in answer.get("embeddings") or ()]
            if len(found) != len(texts):
                raise UpstreamFailed(
                    Failure(
                        "retry",
                        errors.UpstreamError(
                            f"the Gemini API answered {len(found)} embeddings for {len(texts)} "
                            "inputs"
                        ),
                    )
                )
            vectors.extend(found)
            # Newer embedding models report usage; for the others it is estimated.
            counted = (answer.get("usageMetadata") or {}).get("promptTokenCount")
            tokens = counted if isinstance(counted, int) else sum(_estimate(t) for t in texts)
            usage.prompt_tokens += tokens
            usage.total_tokens += tokens
        return ir.Embeddings(vectors, usage)

    def usage_of(self, tail: bytes) -> ir.Usage | None:
        """The usage Google reported at the end of a relayed answer."""
        return wire.usage_in_tail(tail)

    async def list_models(self, credential: Credential) -> list[ModelInfo]:
        if self._models and time.monotonic() - self._models_at < self._models_ttl:
            return self._models
        models: list[ModelInfo] = []
        token = ""
        while True:
            url = f"{self.base}/models?pageSize=1000"
            if token:
                url += f"&pageToken={quote(token)}"
            data = await self._call_json(url, None, credential)
            for raw in data.get("models") or ():
                methods = raw.get("supportedGenerationMethods", ["generateContent"])
                if not {"generateContent", "predict", "embedContent"} & set(methods):
                    continue  # nothing a client here could call
                models.append(
                    ModelInfo(
                        id=str(raw.get("name", "")).removeprefix("models/"),
                        display_name=raw.get("displayName"),
                        input_token_limit=raw.get("inputTokenLimit"),
                        output_token_limit=raw.get("outputTokenLimit"),
                        raw=raw,
                    )
                )
            token = data.get("nextPageToken") or ""
            if not token:
                break
        self._models, self._models_at = models, time.monotonic()
        self._by_id = {m.id: m for m in models}
        return models

    async def probe(self, credential: Credential) -> str:
        """What the upstream says of this credential now (the model list is cached; this is
        not): raises `UpstreamFailed` as a request would."""
        data = await self._call_json(f"{self.base}/models?pageSize=1000", None, credential)
        return f"{len(data.get('models') or ())} models"

    def _model_url(self, model: str, method: str) -> str:
        # The model is the only client-influenced text in an upstream URL; the action is one
        # of ours.
        return f"{self.base}/models/{model_names.path_segment(model)}:{method}"

    def _post(self, url: str, body: bytes, credential: Credential) -> Any:
        session, proxy = self.http.via(credential.proxy)
        return session.post(url, data=body, headers=_headers(credential), proxy=proxy)

    async def _call_json(
        self, url: str, body: bytes | None, credential: Credential
    ) -> dict[str, Any]:
        method = "POST" if body is not None else "GET"
        session, proxy = self.http.via(credential.proxy)
        try:
            async with session.request(
                method, url, data=body, headers=_headers(credential), proxy=proxy
            ) as response:
                raw = await response.read()
                if response.status != 200:
                    raise UpstreamFailed(classify(response.status, raw, credential))
                return orjson.loads(raw)  # type: ignore[no-any-return]
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
            error = _transport_error(exc)
            raise UpstreamFailed(Failure("retry", error, reason=error.message)) from None


def _count_body_for(body: bytes, model: str) -> bytes:
    """A countTokens body whose wrapped request names the routed model, not the client's."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body  # Google will say what is wrong with it
    for key in ("generateContentRequest", "generate_content_request"):
        inner = data.get(key) if isinstance(data, dict) else None
        if isinstance(inner, dict) and "model" in inner:
            inner["model"] = f"models/{model}"
    return orjson.dumps(data)


def _embed_batch_for(body: bytes, model: str) -> bytes:
    """A batchEmbedContents body whose requests name the routed model: Google wants each one to
    match the model in the URL."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    requests = data.get("requests") if isinstance(data, dict) else None
    for item in requests if isinstance(requests, list) else ():
        if isinstance(item, dict) and "model" in item:
            item["model"] = f"models/{model}"
    return orjson.dumps(data)


def _embed_body(request: ir.EmbedRequest, model: str, texts: list[str]) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if request.dimensions is not None:
        extra["outputDimensionality"] = request.dimensions
    if request.task_type is not None:
        extra["taskType"] = request.task_type
    return {
        "requests": [
            {"model": f"models/{model}", "content": {"parts": [{"text": text}]}, **extra}
            for text in texts
        ]
    }


def _estimate(text: str) -> int:
    return max(1, (len(text) + 3) // 4)


def _dumps(body: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError as exc:
        # Decoders bound the depth of what clients send; this is the backstop.
        raise errors.InvalidRequest(f"the request cannot be sent upstream: {exc}") from None


def _headers(credential: Credential) -> dict[str, str]:
    return {"x-goog-api-key": credential.secret["api_key"], "content-type": "application/json"}


def _transport_error(exc: BaseException) -> errors.GatewayError:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return errors.UpstreamTimeout("the Gemini API did not answer in time")
    if isinstance(exc, orjson.JSONDecodeError):
        return errors.UpstreamError("the Gemini API sent a reply that is not JSON")
    return errors.UpstreamError(f"could not reach the Gemini API: {type(exc).__name__}")


def classify(status: int, body: bytes, credential: Credential) -> Failure:
    """What an error answer from the Gemini API means for this credential and this request."""
    google = wire.parse_google_error(status, body)
    message = scrub(google.message, credential)
    said = f"HTTP {status} {google.status or ''}".strip() + f": {message}"
    if google.reason == "API_KEY_INVALID" or (status in (401, 403) and google.structured):
        return Failure(
            "invalidate",
            errors.Unavailable(f"the Gemini API rejected a gemgate credential: {message}"),
            reason=said,
        )
    if status == 429:
        if google.per_day or "limit: 0" in message:
            seconds = max(google.retry_delay or 0.0, LONG_COOLDOWN)
        else:
            seconds = google.retry_delay if google.retry_delay is not None else DEFAULT_COOLDOWN
        return Failure(
            "cooldown",
            errors.RateLimited(message, retry_after=seconds),
            cooldown=seconds,
            reason=said,
        )
    error = errors.from_status(status, message)
    if status >= 500 or status == 408:
        return Failure("retry", error, reason=said)
    if status == 404:
        error.code = "model_not_found"
    return Failure("final", error, reason=said)


def scrub(text: str, credential: Credential) -> str:
    """Remove any of the credential's secret values that an upstream echoed back."""
    for value in credential.secret.values():
        if isinstance(value, str) and len(value) >= 8 and value in text:
            text = text.replace(value, "***")
    return text
