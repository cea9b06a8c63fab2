"""OpenAI embeddings: `POST /v1/embeddings`.

Inputs are text: a string or a list of strings. OpenAI's token-id inputs are refused, as no
Gemini model reads OpenAI's tokens. `encoding_format: base64` gives each vector as the base64
of its little-endian float32 values, which is what the official SDKs ask for by default.
"""

from __future__ import annotations

import array
import base64
import sys
from typing import Any

import orjson

from gemgate import ir, model_names
from gemgate.errors import GatewayError, InvalidRequest
from gemgate.formats.base import integer_field, load_json_object, object_field, string_field
from gemgate.formats.openai_chat import OpenAIChat

_ENCODINGS = ("float", "base64")
_TASK_TYPES = frozenset(
    {
        "RETRIEVAL_QUERY",
        "RETRIEVAL_DOCUMENT",
        "SEMANTIC_SIMILARITY",
        "CLASSIFICATION",
        "CLUSTERING",
        "QUESTION_ANSWERING",
        "FACT_VERIFICATION",
        "CODE_RETRIEVAL_QUERY",
    }
)


class OpenAIEmbeddings:
    endpoint = "embeddings"

    def decode(self, body: bytes) -> ir.EmbedRequest:
        data = load_json_object(body)
        model = model_names.check(data.get("model"))
        dimensions = integer_field(data, "dimensions")
        if dimensions is not None and dimensions < 1:
            raise InvalidRequest("dimensions must be at least 1", param="dimensions")
        encoding = string_field(data, "encoding_format") or "float"
        if encoding not in _ENCODINGS:
            raise InvalidRequest("encoding_format must be float or base64", param="encoding_format")
        return ir.EmbedRequest(
            model=model,
            inputs=_inputs(data.get("input")),
            dimensions=dimensions,
            task_type=_task_type(data),
            client_options={"model": model, "encoding": encoding},
        )

    def encode(self, result: ir.Embeddings, request: ir.EmbedRequest) -> bytes:
        as_base64 = request.client_options.get("encoding") == "base64"
        data = [
            {
                "object": "embedding",
                "index": index,
                "embedding": _base64(vector) if as_base64 else vector,
            }
            for index, vector in enumerate(result.vectors)
        ]
        prompt = result.usage.prompt_tokens
        return orjson.dumps(
            {
                "object": "list",
                "data": data,
                "model": request.client_options.get("model") or request.model,
                "usage": {
                    "prompt_tokens": prompt,
                    "total_tokens": result.usage.total_tokens or prompt,
                },
            }
        )

    def error_body(self, error: GatewayError) -> bytes:
        return _OPENAI.error_body(error)


_OPENAI = OpenAIChat()


def _inputs(value: Any) -> list[str]:
    if isinstance(value, str):
        items: list[Any] = [value]
    elif isinstance(value, list) and value:
        items = value
    else:
        raise InvalidRequest(
            "input must be a string or a non-empty array of strings", param="input"
        )
    for position, item in enumerate(items):
        if isinstance(item, int | list) and not isinstance(item, bool):
            raise InvalidRequest(
                "token-id inputs are not supported: Gemini models read text, send the text",
                param="input",
            )
        if not isinstance(item, str):
            raise InvalidRequest(f"input[{position}] must be a string", param="input")
        if not item:
            raise InvalidRequest(
                f"input[{position}] is empty; each input needs text", param="input"
            )
    return items


def _task_type(data: dict[str, Any]) -> str | None:
    """Gemini's task type, given as an extra field (`task_type`, or under `google`)."""
    google = object_field(data, "google") or {}
    value = data.get("task_type", google.get("task_type", google.get("taskType")))
    if value is None:
        return None
    if not isinstance(value, str) or value.upper() not in _TASK_TYPES:
        raise InvalidRequest(
            f"task_type must be one of {', '.join(sorted(_TASK_TYPES))}", param="task_type"
        )
    return value.upper()


def _base64(vector: list[float]) -> str:
    packed = array.array("f", vector)
    if sys.byteorder == "big":
        packed.byteswap()  # OpenAI's base64 vectors are little-endian float32
    return base64.b64encode(packed.tobytes()).decode()
