"""The Gemini API itself as a client format: `models/{model}:generateContent`,
`:streamGenerateContent` (SSE with `alt=sse`, else an incrementally written JSON array) and
`:countTokens`.

For the `gemini` channel these requests skip the IR (the fast path in `proxy.passthrough`);
this format is how they reach any other channel: decode native JSON (camelCase or snake_case)
to IR, encode IR back to GenerateContentResponse JSON.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson

from gemgate import ir
from gemgate.errors import GatewayError, InvalidRequest
from gemgate.formats.base import load_json_object

Mode = Literal["unary", "sse", "array"]

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_FINISH = {"stop": "STOP", "max_tokens": "MAX_TOKENS", "safety": "SAFETY", "other": "OTHER"}
_BUILTINS = {"googleSearch", "codeExecution", "urlContext"}
_MODES = {"AUTO": "auto", "ANY": "required", "NONE": "none", "VALIDATED": "auto"}
SSE_END = b"\r\n\r\n"


class GeminiNative:
    def __init__(self, mode: Mode = "unary", endpoint: str = "native") -> None:
        self.mode = mode
        self.endpoint = endpoint
        self.stream_media_type = "text/event-stream" if mode == "sse" else "application/json"

    # -- request --------------------------------------------------------------------------

    def decode(self, body: bytes, path_model: str | None = None) -> ir.Request:
        data = load_json_object(body)
        # countTokens may wrap a whole generate request.
        inner = _get(data, "generateContentRequest")
        if isinstance(inner, dict):
            data = inner
        model = path_model or str(data.get("model") or "")
        if not model:
            raise InvalidRequest("the model is missing from the path", param="model")
        contents = data.get("contents")
        if not isinstance(contents, list):
            raise InvalidRequest("contents must be an array", param="contents")
        system = _get(data, "systemInstruction")
        config = _get(data, "generationConfig") or {}
        return ir.Request(
            model=model.removeprefix("models/"),
            messages=[_message(c, i) for i, c in enumerate(contents)],
            system=[p for p in _parts(system) if isinstance(p, ir.Text)] if system else [],
            tools=_tools(data.get("tools") or []),
            tool_choice=_tool_choice(_get(data, "toolConfig")),
            generation=_generation(config),
            thinking=_thinking(_get(config, "thinkingConfig")),
            safety=_get(data, "safetySettings"),
            stream=self.mode != "unary",
        )

    # -- response -------------------------------------------------------------------------

    def encode(self, response: ir.Response, request: ir.Request) -> bytes:
        candidates = []
        feedback = None
        for cand in response.candidates:
            if cand.finish == "blocked" and not cand.parts:
                feedback = {"blockReason": cand.finish_detail or "OTHER"}
                continue
            out: dict[str, Any] = {"content": {"role": "model", "parts": _wire_parts(cand.parts)}}
            if cand.finish:
                out["finishReason"] = _finish(cand.finish, cand.finish_detail)
            out["index"] = cand.index
            candidates.append(out)
        body: dict[str, Any] = {"candidates": candidates}
        if feedback:
            body = {"promptFeedback": feedback}
        body["usageMetadata"] = usage_metadata(response.usage)
        body["modelVersion"] = response.model_version or request.model
        if response.response_id:
            body["responseId"] = response.response_id
        return orjson.dumps(body)

    def encode_count(self, tokens: int) -> bytes:
        return orjson.dumps({"totalTokens": tokens})

    def stream_encoder(self, request: ir.Request) -> NativeStream:
        return NativeStream(request, self.mode == "sse")

    def error_body(self, error: GatewayError) -> bytes:
        if error.google_body is not None:
            return error.google_body
        return orjson.dumps(error_object(error))

    # -- relayed streams (the fast path) ----------------------------------------------------
    # The channel hands over one whole event at a time (its JSON, as Google wrote it), so every
    # frame, an error frame included, starts on an event boundary.

    def relay_event(self, payload: bytes, first: bool) -> bytes:
        if self.mode == "sse":
            if b"\n" in payload:  # an event spread over several data: lines stays one event
                payload = payload.replace(b"\n", b"\r\ndata: ")
            return b"data: " + payload + SSE_END
        return (b"[" if first else b",\r\n") + payload

    def relay_end(self, sent: bool) -> bytes:
        if self.mode == "sse":
            return b""
        return b"]" if sent else b"[]"

    def relay_error(self, error: GatewayError, sent: bool) -> bytes:
        """The error that ends a relayed stream once bytes have gone out, as Google ends one: a
        last SSE event, or a last element that closes the JSON array."""
        body = orjson.dumps(error_object(error, in_stream=True))
        if self.mode == "sse":
            return b"data: " + body + SSE_END
        return (b",\r\n" if sent else b"[") + body + b"]"


# The HTTP code Google pairs with each status name (google.rpc.Code).
_CANONICAL_CODES = {
    "INVALID_ARGUMENT": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


def error_object(error: GatewayError, *, in_stream: bool = False) -> dict[str, Any]:
    status = STATUS_NAMES.get(error.status, "INTERNAL" if error.status >= 500 else "UNKNOWN")
    # An error event inside a stream has no HTTP status of its own to agree with, so it
    # carries the code Google pairs with the name (502 is UNAVAILABLE, said as 503).
    code = _CANONICAL_CODES.get(status, error.status) if in_stream else error.status
    return {"error": {"code": code, "message": error.message, "status": status}}


class NativeStream:
    """One GenerateContentResponse chunk per IR part; the finish reason and the final usage
    go out in a last chunk, since Gemini reports usage after the parts of a chunk."""

    def __init__(self, request: ir.Request, sse: bool) -> None:
        self.sse = sse
        self.model = request.model
        self.response_id: str | None = None
        self.usage: ir.Usage | None = None
        self.finish: dict[int, ir.Finish] = {}
        self.blocked: str | None = None
        self.frames = 0

    def event(self, event: ir.Event) -> bytes:
        if isinstance(event, ir.Start):
            self.response_id = event.response_id
            self.model = event.model_version or self.model
        elif isinstance(event, ir.PartEvent):
            wire = _wire_parts([event.part])
            if wire:
                candidate = {"content": {"role": "model", "parts": wire}, "index": event.index}
                return self._frame({"candidates": [candidate]})
        elif isinstance(event, ir.Finish):
            if event.reason == "blocked":
                self.blocked = event.detail or "OTHER"
            else:
                self.finish[event.index] = event
        elif isinstance(event, ir.UsageEvent):
            self.usage = event.usage
        return b""

    def end(self) -> bytes:
        last: dict[str, Any] = {}
        if self.blocked:
            last["promptFeedback"] = {"blockReason": self.blocked}
        elif self.finish:
            last["candidates"] = [
                {"finishReason": _finish(f.reason, f.detail), "index": i}
                for i, f in sorted(self.finish.items())
            ]
        tail = self._frame(last) if last or self.usage else b""
        if self.sse:
            return tail
        return tail + b"]" if self.frames else b"[]"

    def error(self, error: GatewayError) -> bytes:
        body = orjson.dumps(error_object(error, in_stream=True))
        if self.sse:
            return b"data: " + body + SSE_END
        return (b",\r\n" if self.frames else b"[") + body + b"]"

    def _frame(self, chunk: dict[str, Any]) -> bytes:
        chunk["usageMetadata"] = usage_metadata(self.usage or ir.Usage())
        chunk["modelVersion"] = self.model
        if self.response_id:
            chunk["responseId"] = self.response_id
        body = orjson.dumps(chunk)
        self.frames += 1
        if self.sse:
            return b"data: " + body + SSE_END
        return (b",\r\n" if self.frames > 1 else b"[") + body


def usage_metadata(usage: ir.Usage) -> dict[str, int]:
    out = {
        "promptTokenCount": usage.prompt_tokens,
        "candidatesTokenCount": usage.output_tokens,
        "totalTokenCount": usage.total_tokens
        or usage.prompt_tokens + usage.output_tokens + usage.thought_tokens,
    }
    if usage.thought_tokens:
        out["thoughtsTokenCount"] = usage.thought_tokens
    if usage.cached_tokens:
        out["cachedContentTokenCount"] = usage.cached_tokens
    if usage.tool_prompt_tokens:
        out["toolUsePromptTokenCount"] = usage.tool_prompt_tokens
    return out


# -- decoding helpers -------------------------------------------------------------------------


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


def _get(data: Any, camel: str) -> Any:
    """A field in either spelling Google accepts."""
    if not isinstance(data, dict):
        return None
    value = data.get(camel)
    return value if value is not None else data.get(_snake(camel))


def _message(content: Any, position: int) -> ir.Message:
    if not isinstance(content, dict):
        raise InvalidRequest(f"contents[{position}] must be an object", param="contents")
    role = content.get("role") or "user"
    if role not in ("user", "model", "function"):
        raise InvalidRequest(
            f"contents[{position}].role must be 'user' or 'model', got {role!r}", param="contents"
        )
    return ir.Message("model" if role == "model" else "user", _parts(content, position))


def _parts(content: Any, position: int = 0) -> list[ir.Part]:
    out: list[ir.Part] = []
    for raw in content.get("parts") or ():
        part = _part(raw, position)
        if part is not None:
            out.append(part)
    return out


def _part(raw: Any, position: int) -> ir.Part | None:
    if not isinstance(raw, dict):
        raise InvalidRequest(f"contents[{position}].parts entries must be objects")
    signature = _get(raw, "thoughtSignature")
    if "text" in raw:
        return ir.Text(str(raw["text"]), bool(raw.get("thought")), signature)
    if (data := _get(raw, "inlineData")) is not None:
        return ir.Media(str(_get(data, "mimeType") or ""), data=data.get("data"))
    if (data := _get(raw, "fileData")) is not None:
        return ir.Media(str(_get(data, "mimeType") or ""), uri=_get(data, "fileUri"))
    if (call := _get(raw, "functionCall")) is not None:
        name = str(call.get("name", ""))
        # Gemini has no call ids in history; results are matched to calls by name.
        return ir.ToolCall(str(call.get("id") or name), name, call.get("args") or {}, signature)
    if (result := _get(raw, "functionResponse")) is not None:
        name = str(result.get("name", ""))
        response = result.get("response") or {}
        is_error = isinstance(response, dict) and set(response) == {"error"}
        if (
            isinstance(response, dict)
            and len(response) == 1
            and set(response) & {"output", "error"}
        ):
            output = next(iter(response.values()))
        else:
            output = response
        return ir.ToolResult(str(result.get("id") or name), name, output, is_error)
    if (code := _get(raw, "executableCode")) is not None:
        return ir.CodeCall(
            str(code.get("language", "PYTHON")), str(code.get("code", "")), signature
        )
    if (result := _get(raw, "codeExecutionResult")) is not None:
        return ir.CodeResult(
            str(result.get("outcome", "OUTCOME_OK")), str(result.get("output", ""))
        )
    if signature:
        return ir.Text("", False, signature)
    raise InvalidRequest(f"contents[{position}] has a part of a kind gemgate cannot convert")


def _tools(tools: Any) -> list[ir.Tool]:
    out: list[ir.Tool] = []
    for tool in tools if isinstance(tools, list) else ():
        for key, value in tool.items():
            camel = key if key in _BUILTINS else _camel(key)
            if camel == "functionDeclarations":
                out.extend(_function(d) for d in value or ())
            elif camel in _BUILTINS:
                out.append(ir.BuiltinTool(camel))  # type: ignore[arg-type]
            else:
                raise InvalidRequest(f"the tool {key!r} is only available on the gemini channel")
    return out


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


def _function(declaration: dict[str, Any]) -> ir.FunctionTool:
    schema = _get(declaration, "parametersJsonSchema")
    if schema is None and declaration.get("parameters") is not None:
        schema = _json_schema(declaration["parameters"])
    return ir.FunctionTool(str(declaration.get("name", "")), declaration.get("description"), schema)


def _json_schema(node: Any) -> Any:
    """Google's OpenAPI-style `parameters` (types in capitals) as plain JSON Schema."""
    if isinstance(node, list):
        return [_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "type" and isinstance(value, str):
            out[key] = value.lower()
        elif key == "properties" and isinstance(value, dict):
            out[key] = {name: _json_schema(sub) for name, sub in value.items()}
        else:
            out[key] = _json_schema(value) if key in ("items", "anyOf") else value
    return out


def _tool_choice(config: Any) -> ir.ToolChoice | None:
    calling = _get(config, "functionCallingConfig")
    if not isinstance(calling, dict):
        return None
    mode = _MODES.get(str(calling.get("mode", "AUTO")).upper(), "auto")
    names = _get(calling, "allowedFunctionNames")
    return ir.ToolChoice(mode, list(names) if names else None)  # type: ignore[arg-type]


def _generation(config: dict[str, Any]) -> ir.Generation:
    return ir.Generation(
        temperature=config.get("temperature"),
        top_p=_get(config, "topP"),
        top_k=_get(config, "topK"),
        max_tokens=_get(config, "maxOutputTokens"),
        stop=list(_get(config, "stopSequences") or []),
        candidates=_get(config, "candidateCount"),
        seed=config.get("seed"),
        presence_penalty=_get(config, "presencePenalty"),
        frequency_penalty=_get(config, "frequencyPenalty"),
        logprobs=config.get("logprobs"),
        response_mime_type=_get(config, "responseMimeType"),
        response_schema=_get(config, "responseJsonSchema")
        or _json_schema(_get(config, "responseSchema")),
        response_modalities=_get(config, "responseModalities"),
        image_config=_get(config, "imageConfig"),
    )


def _thinking(config: Any) -> ir.Thinking | None:
    if not isinstance(config, dict):
        return None
    level = _get(config, "thinkingLevel")
    return ir.Thinking(
        budget=_get(config, "thinkingBudget"),
        level=str(level).lower() if level else None,
        include_thoughts=_get(config, "includeThoughts"),
    )


# -- encoding helpers -------------------------------------------------------------------------


def _wire_parts(parts: list[ir.Part]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for part in parts:
        wire: dict[str, Any]
        signature: str | None = None
        if isinstance(part, ir.Text):
            wire = {"text": part.text}
            if part.thought:
                wire["thought"] = True
            signature = part.signature
        elif isinstance(part, ir.ToolCall):
            wire = {"functionCall": {"name": part.name, "args": part.arguments}}
            signature = part.signature
        elif isinstance(part, ir.Media):
            if part.uri:
                wire = {"fileData": {"mimeType": part.mime_type, "fileUri": part.uri}}
            else:
                wire = {"inlineData": {"mimeType": part.mime_type, "data": part.data or ""}}
        elif isinstance(part, ir.CodeCall):
            wire = {"executableCode": {"language": part.language, "code": part.code}}
            signature = part.signature
        elif isinstance(part, ir.CodeResult):
            wire = {"codeExecutionResult": {"outcome": part.outcome, "output": part.output}}
        else:
            continue
        if signature:
            wire["thoughtSignature"] = signature
        out.append(wire)
    return out


def _finish(reason: ir.FinishReason, detail: str | None) -> str:
    if detail and reason != "blocked":
        return detail
    return _FINISH.get(reason, "OTHER")
