"""A strict, scriptable fake of the Gemini API (generativelanguage.googleapis.com, v1beta).

It is real HTTP on 127.0.0.1, served by aiohttp on a private event loop in a daemon thread, so
sync tests, async tests (which own another loop) and a separately started gemgate process can all
reach it. It rejects what the real service rejects (unknown fields, `id` on function calls,
Gemini-3 calls without thought signatures, broken function-call turns) so translator bugs show up
in tests rather than in production. Protocol notes: /work/shared/reference/api-protocols.md, A/E.

    with FakeGeminiAPI(keys={"key-a"}) as fake:
        fake.script(Reply.text("Hi there", chunks=4, delay=0.05))
        ...  # point the gateway at fake.base_url, then inspect fake.requests

Standalone (benchmarks): python -m tests.fakes.gemini_api --port 9100 --keys k1,k2 --chunks 20
"""

from __future__ import annotations

import argparse
import array
import asyncio
import base64
import binascii
import functools
import hashlib
import io
import re
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Self, TypeAlias

import numpy as np
import orjson
from aiohttp import web
from PIL import Image

SENTINELS = frozenset({"skip_thought_signature_validator", "context_engineering_is_the_way_to_go"})
AUTO_SIGNATURE = "auto"  # Reply.text(signature=AUTO_SIGNATURE): let the fake issue a real one
TINY_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNoaPj/HwAGggL/s75RMwAAAABJRU5ErkJggg=="
)

_TYPE_PREFIX = "type.googleapis.com/google.rpc."
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_NOT_FOUND = (
    "models/{model} is not found for API version v1beta, or is not supported for {method}. "
    "Call ListModels to see the list of available models and their supported methods."
)
_QUOTA = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.\n"
    "* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_"
    "requests, limit: 10, model: {model}"
)
_DEFAULT_MESSAGES = {
    400: "Request contains an invalid argument.",
    401: "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
    "cookie or other valid authentication credential.",
    403: "The caller does not have permission",
    404: _NOT_FOUND,
    429: _QUOTA,
    500: "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "Deadline expired before operation could complete.",
}
_UNREGISTERED = (
    "Method doesn't allow unregistered callers (callers without established identity). Please use "
    "API Key or other form of API consumer identity to call this API."
)
_BAD_KEY = "API key not valid. Please pass a valid API key."
_MISSING_SIGNATURE = (
    "Function call is missing a thought_signature in functionCall parts. This is required for "
    "tools to work correctly, and missing thought_signature may lead to degraded model "
    "performance. Additional data, function call `default_api:{name}` , position {position}. "
    "Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details."
)
_SERVED = ("generateContent", "countTokens", "predict", "embedContent")

# Image models (A.2.5, C.6): the aspect ratios every one takes, and the pixel size each ratio
# comes out at for imageSize 1K (2K and 4K are twice and four times as large).
IMAGE_RATIOS = {
    "1:1": (1024, 1024),
    "2:3": (832, 1248),
    "3:2": (1248, 832),
    "3:4": (864, 1184),
    "4:3": (1184, 864),
    "4:5": (896, 1152),
    "5:4": (1152, 896),
    "9:16": (768, 1344),
    "16:9": (1344, 768),
    "21:9": (1536, 672),
}
# Only Gemini-3-class image models take these, and imageSize at all.
EXTREME_RATIOS = {"1:4": (512, 2048), "4:1": (2048, 512), "1:8": (384, 3072), "8:1": (3072, 384)}
IMAGE_SIZES = {"512": 0.5, "1K": 1, "2K": 2, "4K": 4}
# Imagen through :predict: its own ratios and sizes.
IMAGEN_RATIOS = {
    "1:1": (1024, 1024),
    "3:4": (896, 1280),
    "4:3": (1280, 896),
    "9:16": (768, 1408),
    "16:9": (1408, 768),
}
_PERSON_GENERATION = ("dont_allow", "allow_adult", "allow_all")


@functools.cache
def image_png(width: int, height: int, shade: int = 0) -> str:
    """A deterministic PNG of that size (a colour gradient), as base64."""
    x = np.linspace(0, 255, width, dtype=np.float64)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float64)[:, None]
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    pixels[..., 0] = x.astype(np.uint8)
    pixels[..., 1] = y.astype(np.uint8)
    pixels[..., 2] = (shade * 37) % 256
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


_FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:\-]{0,127}")


def _model(
    model_id: str,
    display: str,
    description: str,
    input_limit: int,
    output_limit: int,
    *,
    version: str = "001",
    thinking: bool = True,
    methods: tuple[str, ...] = (
        "generateContent",
        "countTokens",
        "createCachedContent",
        "batchGenerateContent",
    ),
) -> dict[str, Any]:
    model: dict[str, Any] = {
        "name": f"models/{model_id}",
        "baseModelId": model_id,
        "version": version,
        "displayName": display,
        "description": description,
        "inputTokenLimit": input_limit,
        "outputTokenLimit": output_limit,
        "supportedGenerationMethods": list(methods),
    }
    if "generateContent" in methods:
        model.update(temperature=1.0, topP=0.95, topK=64, maxTemperature=2.0, thinking=thinking)
    return model


def default_models() -> list[dict[str, Any]]:
    """A fresh copy of the default catalogue (tests may mutate or replace `fake.models`)."""
    return [
        _model(
            "gemini-2.5-flash",
            "Gemini 2.5 Flash",
            "Stable version of Gemini 2.5 Flash.",
            1048576,
            65536,
        ),
        _model(
            "gemini-2.5-pro", "Gemini 2.5 Pro", "Stable release of Gemini 2.5 Pro.", 1048576, 65536
        ),
        _model(
            "gemini-2.5-flash-lite",
            "Gemini 2.5 Flash-Lite",
            "Stable version of Gemini 2.5 Flash-Lite.",
            1048576,
            65536,
        ),
        _model(
            "gemini-2.5-flash-image",
            "Nano Banana",
            "Gemini 2.5 Flash Image.",
            32768,
            32768,
            thinking=False,
        ),
        _model(
            "gemini-3-flash-preview",
            "Gemini 3 Flash Preview",
            "Gemini 3 Flash preview.",
            1048576,
            65536,
            version="3-flash-preview-12-2025",
        ),
        _model(
            "gemini-3-pro-preview",
            "Gemini 3 Pro Preview",
            "Gemini 3 Pro preview.",
            1048576,
            65536,
            version="3-pro-preview-11-2025",
        ),
        _model(
            "gemini-3-pro-image-preview",
            "Nano Banana Pro",
            "Gemini 3 Pro Image preview.",
            65536,
            32768,
            version="3-pro-image-preview-11-2025",
        ),
        _model(
            "imagen-4.0-generate-001",
            "Imagen 4",
            "Vertex served Imagen 4.0 model",
            480,
            8192,
            thinking=False,
            methods=("predict",),
        ),
        _model(
            "gemini-embedding-001",
            "Gemini Embedding 001",
            "Text embeddings.",
            2048,
            1,
            thinking=False,
            methods=("embedContent", "countTextTokens", "countTokens"),
        ),
    ]


# --------------------------------------------------------------------------------------------
# Scripting types


@dataclass(frozen=True, kw_only=True)
class Reply:
    """What the fake answers to one generate call. Build with the classmethods, not directly."""

    kind: str
    content: str = ""
    thought: str | None = None
    n_chunks: int = 1
    finish_reason: str = "STOP"
    usage: dict[str, Any] | None = None
    delay: float = 0.0
    signature: str | None = None
    part_list: list[dict[str, Any]] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    message: str | None = None
    status_name: str | None = None
    details: list[dict[str, Any]] | None = None
    retry_delay: str | None = None
    seconds: float = 0.0
    thoughts_tokens: int = 0
    content_type: str = "application/json"
    write_size: int | None = None

    @classmethod
    def text(
        cls,
        text: str,
        *,
        chunks: int = 1,
        finish_reason: str = "STOP",
        thought: str | None = None,
        usage: dict[str, Any] | None = None,
        delay: float = 0.0,
        signature: str | None = None,
        write_size: int | None = None,
    ) -> Reply:
        """A plain answer; streamed as `chunks` text pieces after an optional thought chunk.

        `signature` is attached to the last text part (unary) or to a trailing empty-text part
        (streams); AUTO_SIGNATURE makes the fake issue a valid one for the model.
        `write_size`: the stream's bytes are written that many at a time (`delay` apart),
        wherever that cuts its events, as TCP may deliver them.
        """
        return cls(
            kind="text",
            content=text,
            n_chunks=max(1, chunks),
            finish_reason=finish_reason,
            thought=thought,
            usage=usage,
            delay=delay,
            signature=signature,
            write_size=write_size,
        )

    @classmethod
    def parts(
        cls,
        parts: list[dict[str, Any]],
        *,
        finish_reason: str = "STOP",
        usage: dict[str, Any] | None = None,
        delay: float = 0.0,
    ) -> Reply:
        """Exact parts in one response/chunk; Gemini-3 function calls get a signature added.
        `delay`: seconds the answer takes (as an image model's does)."""
        return cls(
            kind="parts", part_list=parts, finish_reason=finish_reason, usage=usage, delay=delay
        )

    @classmethod
    def chunks(
        cls, responses: list[dict[str, Any]], delay: float = 0.0, write_size: int | None = None
    ) -> Reply:
        """Exact GenerateContentResponse chunks; a unary call gets them merged into one.
        `write_size` as for `text`."""
        return cls(kind="chunks", responses=responses, delay=delay, write_size=write_size)

    @classmethod
    def error(
        cls,
        status: int,
        message: str | None = None,
        *,
        status_name: str | None = None,
        details: list[dict[str, Any]] | None = None,
        retry_delay: str | None = None,
    ) -> Reply:
        return cls(
            kind="error",
            status=status,
            message=message,
            status_name=status_name,
            details=details,
            retry_delay=retry_delay,
        )

    @classmethod
    def raw(cls, status: int, body: str, content_type: str = "text/html; charset=utf-8") -> Reply:
        """Not Google's answer at all: what a proxy in front of it (an HTML error page) or a
        crashed server (plain text) sends, byte for byte."""
        return cls(kind="raw", status=status, content=body, content_type=content_type)

    @classmethod
    def stall(cls, seconds: float) -> Reply:
        """Send nothing at all (not even headers) for `seconds`, then close the connection."""
        return cls(kind="stall", seconds=seconds)

    @classmethod
    def overloaded_after(cls, text: str, write_size: int | None = None) -> Reply:
        """One chunk of `text` with no usage, then an in-stream error chunk (503 overloaded),
        as Google sends when a model gives out mid-answer."""
        error = {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}
        text_chunk = {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}}]}
        return cls.chunks([text_chunk, {"error": error}], write_size=write_size)

    @classmethod
    def disconnect_after(cls, chunks: int) -> Reply:
        """Stream `chunks` text chunks, then drop the connection without an error event."""
        return cls(kind="disconnect", n_chunks=chunks)

    @classmethod
    def cut_mid_event(cls, chunks: int) -> Reply:
        """Stream `chunks` whole chunks, then the first half of one more, then drop the
        connection: the upstream died in the middle of an event."""
        return cls(kind="cut", n_chunks=chunks)

    @classmethod
    def filtered(cls, reason: str) -> Reply:
        """`:predict` (Imagen): every image filtered out, named by its reason."""
        return cls(kind="filtered", message=reason)

    @classmethod
    def blocked(cls, reason: str = "PROHIBITED_CONTENT") -> Reply:
        """The prompt was blocked: HTTP 200, `promptFeedback`, no candidates (A.3)."""
        return cls(kind="blocked", finish_reason=reason)

    @classmethod
    def no_content(cls, finish_reason: str = "MAX_TOKENS", thoughts_tokens: int = 512) -> Reply:
        """A candidate without `content` (budget spent on thinking), as A.3 warns about."""
        return cls(kind="no_content", finish_reason=finish_reason, thoughts_tokens=thoughts_tokens)


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    api_key: str | None
    model: str | None
    action: str | None = None  # generateContent / streamGenerateContent / countTokens / get / list


@dataclass
class _Call:
    """Per-request facts the response renderers need."""

    model: str
    stream: bool
    sse: bool
    include_thoughts: bool
    wants_image: bool
    prompt: dict[str, int]
    image_shape: tuple[int, int] = (1024, 1024)
    response_id: str = field(default_factory=lambda: secrets.token_urlsafe(16))


class _ApiError(Exception):
    def __init__(
        self,
        code: int,
        message: str,
        status: str | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details
        self.status = status or _STATUS_NAMES.get(code, "UNKNOWN")

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message, "status": self.status}
        if self.details:
            error["details"] = self.details
        return {"error": error}


def _bad(message: str, path: str | None = None) -> _ApiError:
    """400 INVALID_ARGUMENT; structural problems also carry a BadRequest field violation."""
    details = None
    if path is not None:
        details = [
            {
                "@type": _TYPE_PREFIX + "BadRequest",
                "fieldViolations": [{"field": path, "description": message}],
            }
        ]
    return _ApiError(400, message, details=details)


# --------------------------------------------------------------------------------------------
# Request schema. A kind is a scalar name, an enum (frozenset), a repeated kind ([kind]) or a
# nested message (_Msg). Requests accept lowerCamelCase and snake_case; paths in error messages
# use snake_case like Google's do.

_Kind: TypeAlias = "str | frozenset[str] | list[Any] | _Msg"


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", r"_\1", name).lower()


class _Msg:
    def __init__(self, **fields: _Kind) -> None:
        self.fields = fields
        self.lookup = {spelling: name for name in fields for spelling in (name, _snake(name))}


def _enum(*names: str) -> frozenset[str]:
    return frozenset(names)


_TYPE = _enum(
    "TYPE_UNSPECIFIED", "STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"
)
# The OpenAPI-3.0 subset accepted in `parameters` / `responseSchema` (A.2.2). Anything else, such
# as `$schema`, `additionalProperties` or `const`, is an unknown field to the proto parser.
_SCHEMA = _Msg(
    type=_TYPE,
    format="string",
    title="string",
    description="string",
    nullable="bool",
    enum=["string"],
    items="schema",
    minItems="int",
    maxItems="int",
    minLength="int",
    maxLength="int",
    pattern="string",
    minimum="number",
    maximum="number",
    properties="schema_map",
    required=["string"],
    minProperties="int",
    maxProperties="int",
    propertyOrdering=["string"],
    anyOf=["schema"],
    default="value",
    example="value",
)
_MEDIA_RESOLUTION = _enum(
    "MEDIA_RESOLUTION_UNSPECIFIED",
    "MEDIA_RESOLUTION_LOW",
    "MEDIA_RESOLUTION_MEDIUM",
    "MEDIA_RESOLUTION_HIGH",
    "MEDIA_RESOLUTION_ULTRA_HIGH",
)
_PART_DATA = (
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
)
_PART = _Msg(
    text="string",
    thought="bool",
    thoughtSignature="bytes",
    inlineData=_Msg(mimeType="string", data="bytes"),
    fileData=_Msg(mimeType="string", fileUri="string"),
    # No `id` in either: the Gemini API rejects it (F.1), which is exactly what we want to catch.
    functionCall=_Msg(name="string", args="struct"),
    functionResponse=_Msg(
        name="string",
        response="struct",
        parts=[
            _Msg(
                inlineData=_Msg(mimeType="string", data="bytes", displayName="string"),
                fileData=_Msg(mimeType="string", fileUri="string", displayName="string"),
            )
        ],
    ),
    executableCode=_Msg(language=_enum("LANGUAGE_UNSPECIFIED", "PYTHON"), code="string"),
    codeExecutionResult=_Msg(
        outcome=_enum(
            "OUTCOME_UNSPECIFIED", "OUTCOME_OK", "OUTCOME_FAILED", "OUTCOME_DEADLINE_EXCEEDED"
        ),
        output="string",
    ),
    videoMetadata=_Msg(startOffset="string", endOffset="string", fps="number"),
    mediaResolution=_Msg(level=_MEDIA_RESOLUTION),
    partMetadata="struct",
)
_CONTENT = _Msg(role="string", parts=[_PART])
_TOOL = _Msg(
    functionDeclarations=[
        _Msg(
            name="string",
            description="string",
            parameters="schema",
            parametersJsonSchema="value",
            response="schema",
            responseJsonSchema="value",
            behavior=_enum("UNSPECIFIED", "BLOCKING", "NON_BLOCKING"),
        )
    ],
    googleSearch="struct",
    googleSearchRetrieval="struct",
    codeExecution=_Msg(),
    urlContext=_Msg(),
    googleMaps="struct",
    fileSearch="struct",
    computerUse="struct",
)
_GENERATION_CONFIG = _Msg(
    stopSequences=["string"],
    responseMimeType="string",
    responseSchema="schema",
    responseJsonSchema="value",
    responseModalities=[_enum("MODALITY_UNSPECIFIED", "TEXT", "IMAGE", "AUDIO")],
    candidateCount="int",
    maxOutputTokens="int",
    temperature="number",
    topP="number",
    topK="number",
    seed="int",
    presencePenalty="number",
    frequencyPenalty="number",
    responseLogprobs="bool",
    logprobs="int",
    enableEnhancedCivicAnswers="bool",
    speechConfig="struct",
    mediaResolution=_MEDIA_RESOLUTION,
    thinkingConfig=_Msg(
        includeThoughts="bool",
        thinkingBudget="int",
        thinkingLevel=_enum("THINKING_LEVEL_UNSPECIFIED", "MINIMAL", "LOW", "MEDIUM", "HIGH"),
    ),
    imageConfig=_Msg(
        aspectRatio="string",
        imageSize="string",
        personGeneration=_enum(
            "PERSON_GENERATION_UNSPECIFIED", "ALLOW_ALL", "ALLOW_ADULT", "ALLOW_NONE"
        ),
    ),
)
_REQUEST_FIELDS: dict[str, _Kind] = dict(
    contents=[_CONTENT],
    systemInstruction=_CONTENT,
    tools=[_TOOL],
    toolConfig=_Msg(
        functionCallingConfig=_Msg(
            mode=_enum("MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "VALIDATED"),
            allowedFunctionNames=["string"],
        ),
        retrievalConfig="struct",
    ),
    safetySettings=[
        _Msg(
            # The IMAGE_* and JAILBREAK categories are Vertex-only (A.2.4).
            category=_enum(
                "HARM_CATEGORY_UNSPECIFIED",
                "HARM_CATEGORY_HARASSMENT",
                "HARM_CATEGORY_HATE_SPEECH",
                "HARM_CATEGORY_SEXUALLY_EXPLICIT",
                "HARM_CATEGORY_DANGEROUS_CONTENT",
                "HARM_CATEGORY_CIVIC_INTEGRITY",
            ),
            threshold=_enum(
                "HARM_BLOCK_THRESHOLD_UNSPECIFIED",
                "BLOCK_LOW_AND_ABOVE",
                "BLOCK_MEDIUM_AND_ABOVE",
                "BLOCK_ONLY_HIGH",
                "BLOCK_NONE",
                "OFF",
            ),
        )
    ],
    generationConfig=_GENERATION_CONFIG,
    cachedContent="string",
)
_REQUEST = _Msg(**_REQUEST_FIELDS)
_COUNT_REQUEST = _Msg(
    contents=[_CONTENT], generateContentRequest=_Msg(model="string", **_REQUEST_FIELDS)
)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _invalid_value(path: str, type_name: str, value: Any) -> _ApiError:
    shown = orjson.dumps(value).decode()[:80]
    return _bad(f"Invalid value at '{path}' ({type_name}), {shown}", path)


def _decode_bytes(value: str) -> bytes | None:
    """Proto-JSON bytes: standard or URL-safe base64, padding optional."""
    text = value.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _check(kind: _Kind, value: Any, path: str) -> Any:
    """Validate `value` against `kind`; return it with message keys normalised to camelCase."""
    if value is None:  # proto JSON treats null as "not set"
        return None
    if isinstance(kind, _Msg):
        if not isinstance(value, dict):
            raise _invalid_value(path, "TYPE_MESSAGE", value)
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = kind.lookup.get(key)
            if name is None:
                where = f" at '{path}'" if path else ""
                raise _bad(
                    f'Invalid JSON payload received. Unknown name "{key}"{where}: '
                    "Cannot find field.",
                    path,
                )
            out[name] = _check(kind.fields[name], item, _join(path, _snake(name)))
        return out
    if isinstance(kind, list):
        if not isinstance(value, list):
            raise _invalid_value(path, "TYPE_LIST", value)
        for i, item in enumerate(value):
            if item is None:  # null is "not set" for a field, but a list element must be set
                raise _invalid_value(f"{path}[{i}]", "TYPE_LIST", item)
        return [_check(kind[0], item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(kind, frozenset):
        if not isinstance(value, str) or value.upper() not in kind:
            raise _invalid_value(path, "TYPE_ENUM", value)
        return value.upper()  # Google accepts documented lower-case spellings
    if kind == "schema":
        return _check(_SCHEMA, value, path)
    if kind == "schema_map":  # property names are free; only the values are schemas
        if not isinstance(value, dict):
            raise _invalid_value(path, "TYPE_MESSAGE", value)
        return {
            name: _check(_SCHEMA, sub, f"{path}[{i}].value")
            for i, (name, sub) in enumerate(value.items())
        }
    ok = {
        "string": isinstance(value, str),
        "bool": isinstance(value, bool),
        "int": (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and float(value).is_integer()
        )
        or (isinstance(value, str) and value.lstrip("-").isdigit()),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "bytes": isinstance(value, str),
        "struct": isinstance(value, dict),
        "value": True,
    }[kind]
    if not ok:
        raise _invalid_value(path, f"TYPE_{kind.upper()}", value)
    if kind == "bytes" and _decode_bytes(value) is None:
        raise _bad(
            f"Invalid value at '{path}' (TYPE_BYTES), Base64 decoding failed for \"{value[:40]}\"",
            path,
        )
    return value


def _check_parts(parts: list[dict[str, Any]] | None, path: str, owner: str) -> None:
    if not parts:
        raise _bad(f"* GenerateContentRequest.{path}.parts: {owner}.parts must not be empty.\n")
    for j, part in enumerate(parts):
        present = [name for name in _PART_DATA if part.get(name) is not None]
        if not present:
            raise _bad(
                f"* GenerateContentRequest.{path}.parts[{j}].data: required oneof field "
                "'data' must have one initialized field\n"
            )
        if len(present) > 1:
            raise _bad(
                f"Invalid JSON payload received. Oneof field 'data' is already set. "
                f"Cannot set '{_snake(present[1])}'",
                f"{path}.parts[{j}]",
            )


def _count(content: dict[str, Any], name: str) -> int:
    return sum(1 for part in content["parts"] if part.get(name) is not None)


def _check_semantics(req: dict[str, Any]) -> None:
    """The cross-field rules the real service enforces (A.2, A.8)."""
    contents = req.get("contents") or []
    if not contents:
        raise _bad("* GenerateContentRequest.contents: contents is not specified\n")
    for i, content in enumerate(contents):
        # A lone content may omit its role; in a conversation every turn needs one.
        role = content.get("role") or ("user" if len(contents) == 1 else "")
        if role not in ("user", "model"):
            raise _bad("Please use a valid role: user, model.")
        content["role"] = role
        _check_parts(content.get("parts"), f"contents[{i}]", "contents")
    if req.get("systemInstruction") is not None:
        _check_parts(
            req["systemInstruction"].get("parts"), "system_instruction", "system_instruction"
        )
    for i, content in enumerate(contents):
        previous = contents[i - 1] if i else None
        calls_here = content["role"] == "model" and _count(content, "functionCall")
        if calls_here and (previous is None or previous["role"] != "user"):
            raise _bad(
                "Please ensure that function call turn comes immediately after a "
                "user turn or after a function response turn."
            )
        responses = _count(content, "functionResponse") if content["role"] == "user" else 0
        if responses:
            calls = _count(previous, "functionCall") if previous else 0
            if not previous or previous["role"] != "model" or not calls:
                raise _bad(
                    "Please ensure that function response turn comes immediately after "
                    "a function call turn."
                )
            if calls != responses:
                raise _bad(
                    "Please ensure that the number of function response parts is equal "
                    "to the number of function call parts of the function call turn."
                )
    config = req.get("generationConfig") or {}
    thinking = config.get("thinkingConfig") or {}
    if thinking.get("thinkingBudget") is not None and thinking.get("thinkingLevel") is not None:
        raise _bad("You can only set only one of thinking budget and thinking level.")
    if len(config.get("stopSequences") or []) > 5:
        raise _bad(
            "* GenerateContentRequest.generation_config.stop_sequences: the number of "
            "stop_sequences must not exceed 5.\n"
        )
    if config.get("responseSchema") is not None and config.get("responseJsonSchema") is not None:
        raise _bad(
            "* GenerateContentRequest.generation_config.response_json_schema: "
            "response_schema and response_json_schema cannot both be set.\n"
        )
    if (
        config.get("responseSchema") is not None or config.get("responseJsonSchema") is not None
    ) and config.get("responseMimeType") not in ("application/json", "text/x.enum"):
        raise _bad(
            "* GenerateContentRequest.generation_config.response_mime_type: a response "
            "schema is only supported with response_mime_type 'application/json' or "
            "'text/x.enum'.\n"
        )
    for t, tool in enumerate(req.get("tools") or []):
        for d, decl in enumerate(tool.get("functionDeclarations") or []):
            where = f"* GenerateContentRequest.tools[{t}].function_declarations[{d}]"
            if not _FUNCTION_NAME.fullmatch(decl.get("name") or ""):
                raise _bad(
                    f"{where}.name: Invalid function name. Must start with a letter or an "
                    "underscore. Must be a-z, A-Z, 0-9, or contain underscores, dots, "
                    "colons and dashes, with a maximum length of 128.\n"
                )
            for a, b in (
                ("parameters", "parametersJsonSchema"),
                ("response", "responseJsonSchema"),
            ):
                if decl.get(a) is not None and decl.get(b) is not None:
                    raise _bad(
                        f"{where}.{_snake(b)}: {_snake(a)} and {_snake(b)} cannot both be set.\n"
                    )


def _image_shape(model: str, config: dict[str, Any]) -> tuple[int, int]:
    """The size an image model's picture comes out at; 400 for what the model rejects."""
    modalities = config.get("responseModalities")
    image_model = "image" in model
    if modalities and "IMAGE" in modalities and not image_model:
        raise _bad("Model does not support the requested response modalities: image")
    image_config = config.get("imageConfig")
    if image_config is None:
        return IMAGE_RATIOS["1:1"]
    if not image_model:
        raise _bad(
            "* GenerateContentRequest.generation_config.image_config: image_config is only "
            "supported by image generation models.\n"
        )
    newer = re.match(r"gemini-[3-9]", model) is not None
    ratios = {**IMAGE_RATIOS, **(EXTREME_RATIOS if newer else {})}
    ratio = image_config.get("aspectRatio", "1:1")
    if ratio not in ratios:
        raise _bad(
            f"* GenerateContentRequest.generation_config.image_config.aspect_ratio: "
            f"unsupported aspect ratio {ratio!r} for {model}.\n"
        )
    size = image_config.get("imageSize")
    if size is not None and not newer:
        # 2.5 Flash Image has one size; it rejects the field (A.2.5).
        raise _bad(
            "* GenerateContentRequest.generation_config.image_config.image_size: image_size "
            f"is not supported by {model}.\n"
        )
    if size is not None and size not in IMAGE_SIZES:
        raise _bad(
            "* GenerateContentRequest.generation_config.image_config.image_size: must be one "
            f"of 1K, 2K, 4K, not {size!r}.\n"
        )
    scale = IMAGE_SIZES[size or "1K"]
    width, height = ratios[ratio]
    return int(width * scale), int(height * scale)


def _current_turn_start(contents: list[dict[str, Any]]) -> int:
    """Index after the last user content that is not only function responses (E.1)."""
    for i in range(len(contents) - 1, -1, -1):
        content = contents[i]
        if content["role"] == "user" and any(
            part.get("functionResponse") is None for part in content["parts"]
        ):
            return i + 1
    return 0


# --------------------------------------------------------------------------------------------
# Token accounting: cheap, deterministic and roughly the right size.


def _tokens(text: str) -> int:
    return (len(text) + 3) // 4


def _modality(mime: str) -> str:
    for prefix, modality in (("image/", "IMAGE"), ("audio/", "AUDIO"), ("video/", "VIDEO")):
        if mime.startswith(prefix):
            return modality
    return "DOCUMENT"


def _part_tokens(part: dict[str, Any]) -> tuple[str, int]:
    if part.get("text") is not None:
        return "TEXT", _tokens(part["text"])
    blob = part.get("inlineData") or part.get("fileData")
    if blob is not None:
        return _modality(blob.get("mimeType") or ""), 258
    return "TEXT", len(orjson.dumps(part)) // 4


def _prompt_tokens(req: dict[str, Any], *, with_system_and_tools: bool = True) -> dict[str, int]:
    counts = {"TEXT": 0}
    contents = list(req.get("contents") or [])
    if with_system_and_tools and req.get("systemInstruction"):
        contents.append(req["systemInstruction"])
    for content in contents:
        for part in content.get("parts") or []:
            modality, n = _part_tokens(part)
            counts[modality] = counts.get(modality, 0) + n
    if with_system_and_tools and req.get("tools"):
        counts["TEXT"] += len(orjson.dumps(req["tools"])) // 4
    return counts


def _usage(prompt: dict[str, int], candidates: int, thoughts: int) -> dict[str, Any]:
    total = sum(prompt.values())
    usage: dict[str, Any] = {"promptTokenCount": total}
    if candidates:
        usage["candidatesTokenCount"] = candidates
    usage["totalTokenCount"] = total + candidates + thoughts
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    usage["promptTokensDetails"] = [
        {"modality": m, "tokenCount": n} for m, n in prompt.items() if n
    ]
    return usage


def _partial_usage(final: dict[str, Any], done: int, total: int) -> dict[str, Any]:
    """Cumulative usage after `done` of `total` text chunks, ending exactly at `final`."""
    if done >= total:
        return final
    usage = dict(final)
    full = final.get("candidatesTokenCount", 0)
    so_far = full * done // total
    usage["totalTokenCount"] = final.get("totalTokenCount", 0) - full + so_far
    usage.pop("candidatesTokenCount", None)
    if so_far:
        usage["candidatesTokenCount"] = so_far
    return usage


def _split(text: str, n: int) -> list[str]:
    return [text[len(text) * i // n : len(text) * (i + 1) // n] for i in range(n)]


def _merge(responses: list[dict[str, Any]]) -> dict[str, Any]:
    """What a unary call returns for a scripted stream: deltas joined into one response."""
    merged: dict[str, Any] = {}
    candidates: dict[int, dict[str, Any]] = {}
    for response in responses:
        for key, value in response.items():
            if key == "promptFeedback" and key in merged:
                continue  # only the first chunk's feedback is meaningful
            if key != "candidates":
                merged[key] = value
        for cand in response.get("candidates") or []:
            into = candidates.setdefault(cand.get("index", 0), {})
            for key, value in cand.items():
                if key != "content":
                    into[key] = value
            parts = into.setdefault("content", {"role": "model", "parts": []})["parts"]
            for part in (cand.get("content") or {}).get("parts") or []:
                last = parts[-1] if parts else None
                # Join plain text deltas, but never move a signature onto other text (E.1).
                if (
                    last is not None
                    and set(last) <= {"text", "thought"}
                    and set(part) <= {"text", "thought"}
                    and last.get("thought") == part.get("thought")
                    and "text" in part
                ):
                    last["text"] = last.get("text", "") + part["text"]
                else:
                    parts.append(dict(part))
    if candidates:
        merged["candidates"] = [candidates[i] for i in sorted(candidates)]
    return merged


# --------------------------------------------------------------------------------------------
# The server


# --------------------------------------------------------------------------------------------
# Speech (TTS models), embeddings and the Files API (issue 15). Kept in one mixin so that other
# additions to the fake merge cleanly. Facts: Google's Gemini API docs (speech generation,
# embeddings, files) and the google-genai SDK's own request and response shapes.

TTS_MIME = "audio/L16;codec=pcm;rate=24000"
TTS_RATE = 24000
PREBUILT_VOICES = frozenset(
    {
        "Zephyr", "Puck", "Charon", "Kore", "Fenrir", "Leda", "Orus", "Aoede", "Callirrhoe",
        "Autonoe", "Enceladus", "Iapetus", "Umbriel", "Algieba", "Despina", "Erinome",
        "Algenib", "Rasalgethi", "Laomedeia", "Achernar", "Alnilam", "Schedar", "Gacrux",
        "Pulcherrima", "Achird", "Zubenelgenubi", "Vindemiatrix", "Sadachbia", "Sadaltager",
        "Sulafat",
    }
)  # fmt: skip
_VOICE_CONFIG = _Msg(prebuiltVoiceConfig=_Msg(voiceName="string"))
_SPEECH_CONFIG = _Msg(
    voiceConfig=_VOICE_CONFIG,
    languageCode="string",
    multiSpeakerVoiceConfig=_Msg(
        speakerVoiceConfigs=[_Msg(speaker="string", voiceConfig=_VOICE_CONFIG)]
    ),
)
_TASK_TYPES = _enum(
    "TASK_TYPE_UNSPECIFIED",
    "RETRIEVAL_QUERY",
    "RETRIEVAL_DOCUMENT",
    "SEMANTIC_SIMILARITY",
    "CLASSIFICATION",
    "CLUSTERING",
    "QUESTION_ANSWERING",
    "FACT_VERIFICATION",
    "CODE_RETRIEVAL_QUERY",
)
_EMBED_REQUEST = _Msg(
    model="string",
    content=_CONTENT,
    taskType=_TASK_TYPES,
    title="string",
    outputDimensionality="int",
)
_BATCH_EMBED_REQUEST = _Msg(requests=[_EMBED_REQUEST])
# CreateFileRequest: a File, of which only a few fields mean anything to a new upload.
_CREATE_FILE = _Msg(
    file=_Msg(
        name="string",
        displayName="string",
        mimeType="string",
        sizeBytes="int",
        source=_enum("SOURCE_UNSPECIFIED", "UPLOADED", "GENERATED", "REGISTERED"),
    )
)
EMBED_BATCH_LIMIT = 100
EMBED_DIMENSIONS = 3072
# Files live 48 hours on the Gemini API.
FILE_LIFETIME = 48 * 3600


def media_models() -> list[dict[str, Any]]:
    """The TTS and embedding models the fake adds to its catalogue."""
    tts = ("countTokens", "generateContent")
    return [
        _model(
            "gemini-2.5-flash-preview-tts", "Gemini 2.5 Flash Preview TTS", "TTS.", 8192, 16384,
            thinking=False, methods=tts,
        ),
        _model(
            "gemini-2.5-pro-preview-tts", "Gemini 2.5 Pro Preview TTS", "TTS.", 8192, 16384,
            thinking=False, methods=tts,
        ),
        _model(
            "gemini-embedding-2", "Gemini Embedding 2", "Embeddings.", 8192, 1,
            thinking=False, methods=("embedContent", "countTokens"),
        ),
    ]  # fmt: skip


def speech_pcm(text: str) -> bytes:
    """The 24 kHz 16-bit mono PCM the fake speaks for `text`: deterministic, 0.05 s a char."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
    count = max(1, len(text)) * TTS_RATE // 20
    samples = array.array("h", ((seed + i * 7919) % 65536 - 32768 for i in range(count)))
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()


def embedding_of(text: str, dimensions: int = EMBED_DIMENSIONS) -> list[float]:
    """The vector the fake gives `text`: deterministic values in [-1, 1]."""
    digest = hashlib.sha256(text.encode()).digest()
    return [
        round(((digest[i % 32] * 131 + i * 17) % 2001) / 1000.0 - 1.0, 3) for i in range(dimensions)
    ]


def _rfc3339(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + ".000000Z"


def _prompt_text(req: dict[str, Any]) -> str:
    return "".join(
        part.get("text") or ""
        for content in req.get("contents") or ()
        for part in content.get("parts") or ()
    )


@dataclass
class FakeFile:
    name: str
    mime_type: str
    size: int
    key: str
    data: bytearray = field(default_factory=bytearray)
    state: str = "PROCESSING"
    polls_left: int = 1
    created: float = field(default_factory=time.time)
    display_name: str | None = None

    def resource(self, base_url: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "mimeType": self.mime_type,
            "sizeBytes": str(self.size),
            "createTime": _rfc3339(self.created),
            "updateTime": _rfc3339(self.created),
            "expirationTime": _rfc3339(self.created + FILE_LIFETIME),
            "sha256Hash": base64.b64encode(hashlib.sha256(self.data).digest()).decode(),
            "uri": f"{base_url}/v1beta/{self.name}",
            "state": self.state,
            "source": "UPLOADED",
        }
        if self.display_name:
            out["displayName"] = self.display_name
        return out


@dataclass
class _UploadSession:
    key: str
    size: int
    mime_type: str
    display_name: str | None
    data: bytearray = field(default_factory=bytearray)


class MediaAPIs:
    """TTS answers, embeddings and the Files API of the fake Gemini API."""

    base_url: str
    models: list[dict[str, Any]]
    keys: set[str]

    def _init_media(self) -> None:
        self.models.extend(media_models())
        self.files: dict[str, FakeFile] = {}
        self._sessions: dict[str, _UploadSession] = {}
        # GETs of a new video or audio file that still say PROCESSING.
        self.processing_polls = 1

    def _reset_media(self) -> None:
        self.files.clear()
        self._sessions.clear()
        self.processing_polls = 1

    # ---- speech -------------------------------------------------------------------------

    @staticmethod
    def is_speech_model(model: str) -> bool:
        return model.endswith("-tts") or "-tts-" in model

    def _check_speech(self, req: dict[str, Any], model: str) -> None:
        """What a TTS model refuses: other modalities, system instructions, tools, voices it
        does not have."""
        config = req.get("generationConfig") or {}
        modalities = config.get("responseModalities") or ["TEXT"]
        if modalities != ["AUDIO"]:
            raise _bad(
                f"The requested combination of response modalities ({', '.join(modalities)}) "
                f"is not supported by the model. models/{model} accepts the following "
                "combination of response modalities:\n* AUDIO\n"
            )
        if req.get("systemInstruction") is not None:
            raise _bad(f"Developer instruction is not enabled for models/{model}")
        if req.get("tools"):
            raise _bad(f"Function calling is not enabled for models/{model}")
        for content in req["contents"]:
            for part in content["parts"]:
                if part.get("text") is None:
                    raise _bad(f"models/{model} accepts text input only.")
        where = "generation_config.speech_config"
        speech = _check(_SPEECH_CONFIG, config.get("speechConfig"), where)
        voice = ((speech or {}).get("voiceConfig") or {}).get("prebuiltVoiceConfig") or {}
        name = voice.get("voiceName")
        if name is not None and name not in PREBUILT_VOICES:
            raise _bad(f"Voice {name} is not supported.")

    def _speech_reply(self, req: dict[str, Any], stream: bool, model: str) -> Reply:
        """The PCM of the prompt's text: one part unary, three pieces when streamed."""
        pcm = speech_pcm(_prompt_text(req))
        audio_tokens = len(pcm) // 2 * 25 // TTS_RATE + 1
        prompt = _tokens(_prompt_text(req))
        usage = {
            "promptTokenCount": prompt,
            "candidatesTokenCount": audio_tokens,
            "totalTokenCount": prompt + audio_tokens,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
            "candidatesTokensDetails": [{"modality": "AUDIO", "tokenCount": audio_tokens}],
        }
        if not stream:
            part = {"inlineData": {"mimeType": TTS_MIME, "data": base64.b64encode(pcm).decode()}}
            return Reply.parts([part], usage=usage)
        response_id = secrets.token_urlsafe(16)
        third = len(pcm) // 6 * 2  # whole samples per piece
        pieces = [pcm[:third], pcm[third : 2 * third], pcm[2 * third :]]
        chunks = []
        for i, piece in enumerate(pieces):
            blob = {"mimeType": TTS_MIME, "data": base64.b64encode(piece).decode()}
            candidate: dict[str, Any] = {
                "content": {"role": "model", "parts": [{"inlineData": blob}]},
                "index": 0,
            }
            if i == len(pieces) - 1:
                candidate["finishReason"] = "STOP"
            chunks.append(
                {
                    "candidates": [candidate],
                    "usageMetadata": usage,
                    "modelVersion": model,
                    "responseId": response_id,
                }
            )
        return Reply.chunks(chunks)

    # ---- embeddings ---------------------------------------------------------------------

    def _embed(self, action: str, body: dict[str, Any], model: str) -> dict[str, Any]:
        if action == "embedContent":
            request = _check(_EMBED_REQUEST, body, "")
            vector, tokens = self._embed_one(request, model, "")
            out: dict[str, Any] = {"embedding": {"values": vector}}
        else:
            batch = _check(_BATCH_EMBED_REQUEST, body, "")
            requests = batch.get("requests") or []
            if not requests:
                raise _bad("* BatchEmbedContentsRequest.requests: requests is not specified\n")
            if len(requests) > EMBED_BATCH_LIMIT:
                raise _bad(
                    "* BatchEmbedContentsRequest.requests: at most "
                    f"{EMBED_BATCH_LIMIT} requests can be in one batch\n"
                )
            vectors, tokens = [], 0
            for i, request in enumerate(requests):
                if request.get("model") is None:
                    raise _bad(f"* BatchEmbedContentsRequest.requests[{i}].model: required\n")
                vector, n = self._embed_one(request, model, f"requests[{i}].")
                vectors.append({"values": vector})
                tokens += n
            out = {"embeddings": vectors}
        # Newer embedding models report usage; gemini-embedding-001 does not.
        if model != "gemini-embedding-001":
            out["usageMetadata"] = {
                "promptTokenCount": tokens,
                "promptTokenDetails": [{"modality": "TEXT", "tokenCount": tokens}],
            }
        return out

    @staticmethod
    def _embed_one(request: dict[str, Any], model: str, where: str) -> tuple[list[float], int]:
        named = request.get("model")
        if named is not None and _bare(named) != model:
            raise _bad(
                f"* BatchEmbedContentsRequest.{where}model: the model of each request "
                f"({named}) must be the model of the batch (models/{model})\n"
            )
        content = request.get("content")
        if not content or not content.get("parts"):
            raise _bad(f"* EmbedContentRequest.{where}content: content is not specified\n")
        text = "".join(part.get("text") or "" for part in content["parts"])
        dimensions = request.get("outputDimensionality")
        if dimensions is not None and not 1 <= int(dimensions) <= EMBED_DIMENSIONS:
            raise _bad(
                f"* EmbedContentRequest.{where}output_dimensionality: must be between 1 and "
                f"{EMBED_DIMENSIONS}\n"
            )
        return embedding_of(text, int(dimensions or EMBED_DIMENSIONS)), _tokens(text)

    # ---- Files API ----------------------------------------------------------------------

    async def _files_api(
        self, request: web.Request, raw: bytes, body: Any, api_key: str | None
    ) -> web.StreamResponse:
        try:
            if request.path == "/upload/v1beta/files" and request.method == "POST":
                upload_id = request.query.get("upload_id")
                if upload_id is None:
                    return self._start_upload(request, body, api_key)
                return self._upload_bytes(request, raw, upload_id)
            name = request.path.removeprefix("/v1beta/")
            if request.method == "GET" and name.startswith("files/") and name.count("/") == 1:
                self._authenticate(request, api_key)
                return self._json(self._poll(name, api_key or "").resource(self.base_url))
            raise _ApiError(404, f"Requested entity was not found: {request.path}")
        except _ApiError as err:
            return self._json(err.body(), status=err.code)

    def _start_upload(
        self, request: web.Request, body: Any, api_key: str | None
    ) -> web.StreamResponse:
        self._authenticate(request, api_key)
        headers = request.headers
        if headers.get("x-goog-upload-protocol") != "resumable":
            raise _bad("Only the resumable upload protocol is served here.")
        if headers.get("x-goog-upload-command") != "start":
            raise _bad("The first request of an upload must be X-Goog-Upload-Command: start.")
        size = headers.get("x-goog-upload-header-content-length", "")
        mime = headers.get("x-goog-upload-header-content-type", "")
        if not size.isdigit() or not mime:
            raise _bad("X-Goog-Upload-Header-Content-Length and -Content-Type are required.")
        meta = _check(_CREATE_FILE, body or {}, "")
        upload_id = secrets.token_urlsafe(24)
        self._sessions[upload_id] = _UploadSession(
            api_key or "", int(size), mime, (meta.get("file") or {}).get("displayName")
        )
        url = f"{self.base_url}/upload/v1beta/files?upload_id={upload_id}&upload_protocol=resumable"
        return web.Response(
            status=200,
            headers={
                "x-goog-upload-url": url,
                "x-goog-upload-status": "active",
                "x-goog-upload-chunk-granularity": str(8 * 1024 * 1024),
            },
        )

    def _upload_bytes(self, request: web.Request, raw: bytes, upload_id: str) -> web.StreamResponse:
        # The session URL is the permission; no key is needed on it.
        session = self._sessions.get(upload_id)
        if session is None:
            raise _ApiError(404, "No such upload session.")
        commands = {c.strip() for c in request.headers.get("x-goog-upload-command", "").split(",")}
        offset = request.headers.get("x-goog-upload-offset", "")
        if "upload" not in commands or offset != str(len(session.data)):
            raise _bad(f"Expected an upload command at offset {len(session.data)}.")
        session.data += raw
        if "finalize" not in commands:
            return web.Response(status=200, headers={"x-goog-upload-status": "active"})
        del self._sessions[upload_id]
        if len(session.data) != session.size:
            raise _bad(f"Received {len(session.data)} bytes, {session.size} were announced.")
        slow = session.mime_type.startswith(("video/", "audio/"))
        file = FakeFile(
            name=f"files/{secrets.token_hex(6)}",
            mime_type=session.mime_type,
            size=session.size,
            key=session.key,
            data=session.data,
            state="PROCESSING" if slow else "ACTIVE",
            polls_left=self.processing_polls if slow else 0,
            display_name=session.display_name,
        )
        self.files[file.name] = file
        return web.Response(
            body=orjson.dumps({"file": file.resource(self.base_url)}),
            status=200,
            content_type="application/json",
            headers={"x-goog-upload-status": "final"},
        )

    def _owned(self, name: str, api_key: str) -> FakeFile:
        file = self.files.get(name)
        if file is None or file.key != api_key:
            # A file belongs to the project of the key that uploaded it.
            raise _ApiError(
                403,
                f"You do not have permission to access the File {name.removeprefix('files/')} "
                "or it may not exist.",
            )
        return file

    def _poll(self, name: str, api_key: str) -> FakeFile:
        file = self._owned(name, api_key)
        if file.state == "PROCESSING":
            if file.polls_left <= 0:
                file.state = "ACTIVE"
            file.polls_left -= 1
        return file

    def _check_file_refs(self, req: dict[str, Any], api_key: str | None) -> None:
        """fileData that names one of this fake's files must be the key's own, and ACTIVE."""
        prefix = f"{self.base_url}/v1beta/"
        for content in req.get("contents") or ():
            for part in content.get("parts") or ():
                uri = (part.get("fileData") or {}).get("fileUri") or ""
                if not uri.startswith(prefix):
                    continue
                file = self._owned(uri.removeprefix(prefix), api_key or "")
                if file.state != "ACTIVE":
                    raise _ApiError(
                        400,
                        f"The File {file.name.removeprefix('files/')} is not in an ACTIVE state "
                        "and usage is not allowed.",
                        status="FAILED_PRECONDITION",
                    )

    # The host class provides these.
    def _authenticate(self, request: web.Request, api_key: str | None) -> None:
        raise NotImplementedError

    async def _stream_split(
        self,
        request: web.Request,
        call: _Call,
        chunks: list[dict[str, Any]],
        size: int,
        delay: float,
    ) -> web.StreamResponse:
        """A stream whose writes ignore its event boundaries."""
        if call.sse:
            body = b"".join(b"data: " + orjson.dumps(chunk) + b"\r\n\r\n" for chunk in chunks)
        else:
            body = b"[" + b",\r\n".join(orjson.dumps(chunk) for chunk in chunks) + b"]"
        content_type = "text/event-stream" if call.sse else "application/json; charset=UTF-8"
        resp = web.StreamResponse(headers={"Content-Type": content_type})
        await resp.prepare(request)
        for at in range(0, len(body), size):
            if at and delay:
                await asyncio.sleep(delay)
            await resp.write(body[at : at + size])
        await resp.write_eof()
        return resp

    @staticmethod
    def _json(payload: Any, status: int = 200) -> web.Response:
        raise NotImplementedError


@dataclass
class _Script:
    reply: Reply
    key: str | None
    model: str | None


def _bare(model: str) -> str:
    while model.startswith("models/"):
        model = model[len("models/") :]
    return model


class FakeGeminiAPI(MediaAPIs):
    def __init__(
        self,
        keys: Iterable[str] = ("test-key",),
        *,
        stream_chunks: int = 3,
        host: str = "127.0.0.1",
    ) -> None:
        self.keys: set[str] = set(keys)
        self.models: list[dict[str, Any]] = default_models()
        self.requests: list[Recorded] = []
        self.stream_chunks = stream_chunks  # chunk count of the unscripted default stream
        self.host = host
        self.port = 0
        self._queue: list[_Script] = []
        self._standing: dict[tuple[str | None, str | None], Reply] = {}
        self._issued: set[str] = set()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._inflight: set[asyncio.Task[Any]] = set()
        # The most slow answers (Reply.parts(delay=...)) under way at once since the last reset.
        self.peak_slow = 0
        self._slow = 0
        # Streams whose client (gemgate) closed the connection before the answer's end.
        self.abandoned = 0
        # Optional: chooses the reply to each unscripted generate call from its model and
        # body (soak tests inject faults at random with it).
        self.respond: Callable[[str, dict[str, Any]], Reply] | None = None
        self._init_media()

    # ---- lifecycle ----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, port: int = 0) -> Self:
        ready = threading.Event()
        failure: list[BaseException] = []
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._startup(port))
            except BaseException as exc:  # surfaced to the caller of start()
                failure.append(exc)
                ready.set()
                self._loop.close()
                return
            ready.set()
            self._loop.run_forever()
            self._loop.close()

        self._thread = threading.Thread(target=run, name="fake-gemini-api", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _startup(self, port: int) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # No access log: the benchmark path must stay cheap. Short shutdown: stalls are
        # cancelled by _shutdown anyway.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _shutdown(self) -> None:
        for task in list(self._inflight):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    # ---- scripting ----------------------------------------------------------------------

    def script(self, reply: Reply, *, key: str | None = None, model: str | None = None) -> None:
        with self._lock:
            self._queue.append(_Script(reply, key, _bare(model) if model else None))

    def always(self, reply: Reply, *, key: str | None = None, model: str | None = None) -> None:
        with self._lock:
            self._standing[(key, _bare(model) if model else None)] = reply

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self._standing.clear()
            self.requests.clear()
            self.peak_slow = 0
            self.abandoned = 0
            self._reset_media()

    def issue_signature(self, model: str) -> str:
        """A signature this fake accepts for `model` (for hand-built conversation history)."""
        payload = f"fake-sig:{_bare(model)}:{secrets.token_hex(8)}"
        with self._lock:
            self._issued.add(payload)
        return base64.b64encode(payload.encode()).decode()

    def _take_reply(self, key: str | None, model: str) -> Reply | None:
        with self._lock:
            for key_specific in (True, False):
                for i, entry in enumerate(self._queue):
                    if (entry.key is not None) != key_specific:
                        continue
                    if entry.key in (None, key) and entry.model in (None, model):
                        del self._queue[i]
                        return entry.reply
            for lookup in ((key, model), (key, None), (None, model), (None, None)):
                if lookup in self._standing:
                    return self._standing[lookup]
        return None

    def _default_reply(self, call: _Call) -> Reply:
        if "image" in call.model and call.wants_image:
            return Reply.parts(
                [
                    {"text": "Here is your image."},
                    {"inlineData": {"mimeType": "image/png", "data": image_png(*call.image_shape)}},
                ]
            )
        return Reply.text(f"Hello from {call.model}", chunks=self.stream_chunks)

    # ---- HTTP ---------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        assert task is not None
        self._inflight.add(task)
        try:
            return await self._dispatch(request)
        finally:
            self._inflight.discard(task)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body: Any = None
        bad_json = False
        if raw:
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                bad_json = True
        api_key = request.headers.get("x-goog-api-key") or request.query.get("key") or None
        action, model = self._route(request.method, request.path)
        self.requests.append(
            Recorded(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
                api_key=api_key,
                model=model,
                action=action,
            )
        )
        stream = action == "streamGenerateContent"
        sse = request.query.get("alt") == "sse"
        if request.path.startswith(("/upload/v1beta/files", "/v1beta/files/")):
            return await self._files_api(request, raw, body, api_key)
        try:
            if action is None:
                raise _ApiError(404, f"Requested entity was not found: {request.path}")
            self._authenticate(request, api_key)
            if action == "list":
                return self._json(self._list_models(request.query))
            if model is None:
                raise _ApiError(404, "Requested entity was not found.")
            entry = self._find_model(model, "getModel" if action == "get" else action)
            if action == "get":
                return self._json(entry)
            if bad_json or (body is not None and not isinstance(body, dict)):
                raise _bad("Invalid JSON payload received. Unexpected token.", "")
            if action == "countTokens":
                return self._json(self._count_tokens(body or {}))
            if action in ("embedContent", "batchEmbedContents"):
                return self._json(self._embed(action, body or {}, model))
            if action == "predict":
                return self._json(self._predict(body or {}, model, api_key))
            return await self._generate(request, body or {}, model, api_key, stream, sse)
        except _ApiError as err:
            # Google wraps errors of the non-SSE stream in the array it would have streamed.
            payload = [err.body()] if stream and not sse else err.body()
            return self._json(payload, status=err.code)

    @staticmethod
    def _route(method: str, path: str) -> tuple[str | None, str | None]:
        if not path.startswith("/v1beta/models"):
            return None, None
        rest = path[len("/v1beta/models") :]
        if rest in ("", "/"):
            return ("list", None) if method == "GET" else (None, None)
        if not rest.startswith("/"):
            return None, None
        name, _, verb = rest[1:].partition(":")
        model = _bare(name)
        if not model or "/" in model:
            return None, None
        if method == "GET" and not verb:
            return "get", model
        if method == "POST" and verb:
            return verb, model
        return None, model

    def _authenticate(self, request: web.Request, api_key: str | None) -> None:
        if api_key is None:
            if request.headers.get("authorization", "").lower().startswith("bearer "):
                raise _ApiError(401, _DEFAULT_MESSAGES[401])  # not a Google OAuth token
            raise _ApiError(403, _UNREGISTERED)
        if api_key not in self.keys:
            raise _ApiError(
                400,
                _BAD_KEY,
                details=[
                    {
                        "@type": _TYPE_PREFIX + "ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                        "metadata": {"service": "generativelanguage.googleapis.com"},
                    },
                    {
                        "@type": _TYPE_PREFIX + "LocalizedMessage",
                        "locale": "en-US",
                        "message": _BAD_KEY,
                    },
                ],
            )

    def _find_model(self, model: str, method: str) -> dict[str, Any]:
        needed = {
            "streamGenerateContent": "generateContent",
            "batchEmbedContents": "embedContent",
        }.get(method, method)
        for entry in self.models:
            if entry.get("name") == f"models/{model}":
                supported = entry.get("supportedGenerationMethods", [])
                if needed == "getModel" or (needed in supported and needed in _SERVED):
                    return entry
                break
        raise _ApiError(404, _NOT_FOUND.format(model=model, method=method))

    def _list_models(self, query: Any) -> dict[str, Any]:
        try:
            size = int(query.get("pageSize") or 50)
            start = (
                int(base64.urlsafe_b64decode(query["pageToken"]).decode().removeprefix("offset:"))
                if query.get("pageToken")
                else 0
            )
        except (ValueError, binascii.Error):
            raise _bad("Invalid page token or page size.", "page_token") from None
        size = 50 if size <= 0 else min(size, 1000)
        page: dict[str, Any] = {"models": self.models[start : start + size]}
        if start + size < len(self.models):
            page["nextPageToken"] = base64.urlsafe_b64encode(
                f"offset:{start + size}".encode()
            ).decode()
        return page

    def _count_tokens(self, body: dict[str, Any]) -> dict[str, Any]:
        req = _check(_COUNT_REQUEST, body, "")
        inner = req.get("generateContentRequest")
        if inner is not None and req.get("contents") is not None:
            raise _bad(
                "* CountTokensRequest: contents and generate_content_request are mutually "
                "exclusive.\n"
            )
        _check_semantics(inner if inner is not None else req)
        prompt = _prompt_tokens(inner or req, with_system_and_tools=inner is not None)
        return {
            "totalTokens": sum(prompt.values()),
            "promptTokensDetails": [
                {"modality": m, "tokenCount": n} for m, n in prompt.items() if n
            ],
        }

    def _predict(self, body: dict[str, Any], model: str, api_key: str | None) -> dict[str, Any]:
        """Imagen's `:predict`: one text instance in, `sampleCount` base64 images out."""
        for key in body:
            if key not in ("instances", "parameters"):
                raise _bad(
                    f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.'
                )
        instances = body.get("instances")
        if not isinstance(instances, list) or len(instances) != 1:
            raise _bad("Exactly one instance is required.", "instances")
        instance = instances[0]
        if not isinstance(instance, dict) or set(instance) - {"prompt"}:
            raise _bad("An instance takes a prompt only.", "instances[0]")
        prompt = instance.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise _bad("The prompt is required.", "instances[0].prompt")
        parameters = body.get("parameters") or {}
        allowed = {
            "sampleCount": int,
            "aspectRatio": str,
            "personGeneration": str,
            "includeRaiReason": bool,
            "sampleImageSize": str,
        }
        for key, value in parameters.items():
            kind = allowed.get(key)
            if kind is None:
                raise _bad(
                    f"Invalid JSON payload received. Unknown name \"{key}\" at 'parameters': "
                    "Cannot find field.",
                    "parameters",
                )
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise _invalid_value(f"parameters.{key}", "TYPE_" + kind.__name__.upper(), value)
        count = parameters.get("sampleCount", 4)
        if not 1 <= count <= 4:
            raise _bad("sampleCount must be between 1 and 4.", "parameters.sample_count")
        ratio = parameters.get("aspectRatio", "1:1")
        if ratio not in IMAGEN_RATIOS:
            raise _bad(f"Unsupported aspect ratio: {ratio}.", "parameters.aspect_ratio")
        person = parameters.get("personGeneration")
        if person is not None and person not in _PERSON_GENERATION:
            raise _bad(f"Invalid personGeneration: {person}.", "parameters.person_generation")
        reply = self._take_reply(api_key, model)
        if reply is not None and reply.kind == "error":
            raise self._scripted_error(reply, model)
        if reply is not None and reply.kind == "filtered":
            if not parameters.get("includeRaiReason"):
                return {}
            return {"predictions": [{"raiFilteredReason": reply.message}] * count}
        width, height = IMAGEN_RATIOS[ratio]
        image = {"mimeType": "image/png", "bytesBase64Encoded": image_png(width, height, 1)}
        return {"predictions": [dict(image) for _ in range(count)]}

    def _check_signatures(self, contents: list[dict[str, Any]], model: str) -> None:
        """Gemini 3: the first call of every step in the current turn needs a signature (E.6)."""
        for i in range(_current_turn_start(contents), len(contents)):
            content = contents[i]
            if content["role"] != "model":
                continue
            first = next((p for p in content["parts"] if p.get("functionCall")), None)
            if first is None:
                continue
            signature = first.get("thoughtSignature")
            if signature is None:
                raise _bad(
                    _MISSING_SIGNATURE.format(
                        name=first["functionCall"].get("name", ""), position=i + 1
                    )
                )
            if signature in SENTINELS:
                continue
            payload = (_decode_bytes(signature) or b"").decode(errors="replace")
            if payload not in self._issued or payload.split(":")[1] != model:
                raise _bad("Thought signature is not valid")

    async def _generate(
        self,
        request: web.Request,
        body: dict[str, Any],
        model: str,
        api_key: str | None,
        stream: bool,
        sse: bool,
    ) -> web.StreamResponse:
        return await self._answer(request, _check(_REQUEST, body, ""), model, api_key, stream, sse)

    async def _answer(
        self,
        request: web.Request,
        req: dict[str, Any],
        model: str,
        api_key: str | None,
        stream: bool,
        sse: bool,
    ) -> web.StreamResponse:
        """Answer a validated GenerateContentRequest (also for fakes that wrap it)."""
        _check_semantics(req)
        self._check_file_refs(req, api_key)
        if self.is_speech_model(model):
            self._check_speech(req, model)
        if model.startswith("gemini-3") and "image" not in model:
            self._check_signatures(req["contents"], model)
        config = req.get("generationConfig") or {}
        modalities = config.get("responseModalities") or ["TEXT", "IMAGE"]
        call = _Call(
            model=model,
            stream=stream,
            sse=sse,
            prompt=_prompt_tokens(req),
            include_thoughts=bool((config.get("thinkingConfig") or {}).get("includeThoughts")),
            wants_image="IMAGE" in modalities,
            image_shape=_image_shape(model, config),
        )
        reply = self._take_reply(api_key, model)
        if reply is None and self.is_speech_model(model):
            reply = self._speech_reply(req, stream, model)
        if reply is None:
            reply = self.respond(model, req) if self.respond else self._default_reply(call)

        if reply.kind == "error":
            raise self._scripted_error(reply, model)
        if reply.kind == "raw":
            return web.Response(
                status=reply.status,
                body=reply.content.encode(),
                headers={"content-type": reply.content_type},
            )
        if reply.kind in ("stall", "disconnect", "cut"):
            if reply.kind == "stall" or not stream:
                await asyncio.sleep(reply.seconds)
                return self._drop(request)
            chunks = [
                self._response(
                    call, [{"text": f"chunk {i} "}], None, _usage(call.prompt, 2 * (i + 1), 0)
                )
                for i in range(reply.n_chunks + (reply.kind == "cut"))
            ]
            resp = await self._stream(
                request, call, chunks, 0.0, close=False, cut_last=reply.kind == "cut"
            )
            return self._drop(request, resp)
        chunks = self._render(reply, call)
        if reply.kind == "parts" and reply.delay:
            self._slow += 1
            self.peak_slow = max(self.peak_slow, self._slow)
            try:
                await asyncio.sleep(reply.delay)
            finally:
                self._slow -= 1
        if not stream:
            return self._json(self._unary(chunks[0] if len(chunks) == 1 else _merge(chunks), call))
        if reply.write_size:
            return await self._stream_split(request, call, chunks, reply.write_size, reply.delay)
        return await self._stream(request, call, chunks, reply.delay)

    def _unary(self, response: dict[str, Any], call: _Call) -> Any:
        """The body of a unary answer (a fake that wraps answers overrides this)."""
        return response

    @staticmethod
    def _drop(request: web.Request, resp: web.StreamResponse | None = None) -> web.StreamResponse:
        """Close the socket; aiohttp then treats the response as one to a vanished client."""
        if request.transport is not None:
            request.transport.close()
        return resp if resp is not None else web.Response()

    def _scripted_error(self, reply: Reply, model: str) -> _ApiError:
        message = reply.message or _DEFAULT_MESSAGES.get(reply.status, "Unknown error.").format(
            model=model, method="generateContent"
        )
        # Explicit details are used verbatim; otherwise synthesise what Google sends (A.7).
        details = list(reply.details or [])
        if reply.retry_delay and "Please retry in" not in message:
            message += f"\nPlease retry in {reply.retry_delay}."
        if reply.status == 429 and reply.details is None:
            details += [
                {
                    "@type": _TYPE_PREFIX + "QuotaFailure",
                    "violations": [
                        {
                            "quotaMetric": "generativelanguage.googleapis.com/"
                            "generate_content_free_tier_requests",
                            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                            "quotaDimensions": {"location": "global", "model": model},
                            "quotaValue": "10",
                        }
                    ],
                },
                {
                    "@type": _TYPE_PREFIX + "Help",
                    "links": [
                        {
                            "description": "Learn more about Gemini API quotas",
                            "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                        }
                    ],
                },
            ]
        if reply.retry_delay and reply.details is None:
            details.append({"@type": _TYPE_PREFIX + "RetryInfo", "retryDelay": reply.retry_delay})
        return _ApiError(reply.status, message, reply.status_name, details or None)

    def _response(
        self,
        call: _Call,
        parts: list[dict[str, Any]] | None,
        finish: str | None,
        usage: dict[str, Any],
    ) -> dict[str, Any]:
        candidate: dict[str, Any] = {}
        if parts is not None:
            candidate["content"] = {"role": "model", "parts": parts}
        if finish:
            candidate["finishReason"] = finish
        candidate["index"] = 0
        return {
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": call.model,
            "responseId": call.response_id,
        }

    def _render(self, reply: Reply, call: _Call) -> list[dict[str, Any]]:
        """The stream chunks for `reply` (a unary call gets one response, or the merge)."""
        if reply.kind == "chunks":
            return reply.responses
        if reply.kind == "blocked":
            ratings = [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}]
            return [
                {
                    "promptFeedback": {
                        "blockReason": reply.finish_reason,
                        "safetyRatings": ratings,
                    },
                    "usageMetadata": _usage(call.prompt, 0, 0),
                    "modelVersion": call.model,
                    "responseId": call.response_id,
                }
            ]
        if reply.kind == "no_content":
            return [
                self._response(
                    call, None, reply.finish_reason, _usage(call.prompt, 0, reply.thoughts_tokens)
                )
            ]
        if reply.kind == "parts":
            parts = orjson.loads(orjson.dumps(reply.part_list))  # scripts are reusable
            calls = [p for p in parts if p.get("functionCall")]
            if call.model.startswith("gemini-3") and calls and not calls[0].get("thoughtSignature"):
                calls[0]["thoughtSignature"] = self.issue_signature(call.model)
            candidates = thoughts = 0
            for part in parts:
                n = _part_tokens(part)[1]
                if part.get("thought"):
                    thoughts += n
                else:
                    candidates += n
            usage = reply.usage or _usage(call.prompt, candidates, thoughts)
            return [self._response(call, parts, reply.finish_reason, usage)]
        # kind == "text"
        signature = reply.signature
        if signature == AUTO_SIGNATURE:
            signature = self.issue_signature(call.model)
        thoughts = _tokens(reply.thought) if reply.thought else 0
        final = reply.usage or _usage(call.prompt, _tokens(reply.content), thoughts)
        thought_part = (
            [{"text": reply.thought, "thought": True}]
            if reply.thought and call.include_thoughts
            else []
        )
        if not call.stream:
            answer: dict[str, Any] = {"text": reply.content}
            if signature:
                answer["thoughtSignature"] = signature
            return [self._response(call, [*thought_part, answer], reply.finish_reason, final)]
        chunks = []
        if thought_part:
            chunks.append(
                self._response(call, thought_part, None, _partial_usage(final, 0, reply.n_chunks))
            )
        pieces = _split(reply.content, reply.n_chunks)
        for i, piece in enumerate(pieces, 1):
            last = i == len(pieces)
            delta: list[dict[str, Any]] = [{"text": piece}]
            if last and signature:
                delta.append({"text": "", "thoughtSignature": signature})
            chunks.append(
                self._response(
                    call,
                    delta,
                    reply.finish_reason if last else None,
                    _partial_usage(final, i, len(pieces)),
                )
            )
        return chunks

    async def _stream(
        self,
        request: web.Request,
        call: _Call,
        chunks: list[dict[str, Any]],
        delay: float,
        *,
        close: bool = True,
        cut_last: bool = False,
    ) -> web.StreamResponse:
        content_type = "text/event-stream" if call.sse else "application/json; charset=UTF-8"
        resp = web.StreamResponse(headers={"Content-Type": content_type})
        await resp.prepare(request)
        try:
            for i, chunk in enumerate(chunks):
                if i and delay:
                    await asyncio.sleep(delay)
                if call.sse:
                    frame = b"data: " + orjson.dumps(chunk) + b"\r\n\r\n"
                else:
                    # Pretty-printed like Google's, so a line-based consumer breaks in tests too.
                    frame = b",\r\n" if i else b"["
                    frame += orjson.dumps(chunk, option=orjson.OPT_INDENT_2)
                if cut_last and i == len(chunks) - 1:
                    frame = frame[: len(frame) // 2]
                await resp.write(frame)  # written straight to the socket: no buffering
            if close:
                if not call.sse:
                    await resp.write(b"[]" if not chunks else b"]")
                await resp.write_eof()
        except ConnectionError:
            self.abandoned += 1  # the client went away before the answer's end
        return resp

    @staticmethod
    def _json(payload: Any, status: int = 200) -> web.Response:
        return web.Response(
            body=orjson.dumps(payload),
            status=status,
            content_type="application/json",
            charset="UTF-8",
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the fake Gemini API in the foreground.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--keys", default="test-key", help="comma-separated valid API keys")
    parser.add_argument("--chunks", type=int, default=3, help="chunks per default stream")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds between chunks")
    parser.add_argument(
        "--slow",
        action="append",
        default=[],
        metavar="MODEL=SECONDS",
        help="a model whose answers wait SECONDS between chunks (repeatable)",
    )
    args = parser.parse_args(argv)
    fake = FakeGeminiAPI(keys=args.keys.split(","), stream_chunks=args.chunks, host=args.host)
    if args.delay:
        fake.always(
            Reply.text("Hello from the fake Gemini API", chunks=args.chunks, delay=args.delay)
        )
    for slow in args.slow:
        model, _, seconds = slow.partition("=")
        # Long enough that every chunk has text of its own.
        text = "Hello from the fake Gemini API, slowly: " + "x" * args.chunks
        paced = Reply.text(text, chunks=args.chunks, delay=float(seconds))
        fake.always(paced, model=model)
    fake.start(args.port)
    print(f"fake Gemini API on {fake.base_url} (keys: {args.keys})", flush=True)
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
