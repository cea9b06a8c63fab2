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

from gemgate import input_media, ir, json_depth, model_names, sse
from gemgate.errors import GatewayError, InvalidRequest
from gemgate.formats.base import (
    array_field,
    boolean_field,
    load_json_object,
    media_format,
    object_field,
    string_field,
)

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
        model = model_names.check(path_model if path_model is not None else data.get("model"))
        contents = data.get("contents")
        if not isinstance(contents, list):
            raise InvalidRequest("contents must be an array", param="contents")
        system = _get(data, "systemInstruction")
        if isinstance(system, str):
            system = {"parts": [{"text": system}]}  # the SDKs' shorthand
        config = _get(data, "generationConfig")
        config = {} if config is None else config
        _refuse_unsupported(data, config)
        generation = _generation(config)
        return ir.Request(
            model=model,
            messages=[_message(c, i) for i, c in enumerate(contents)],
            system=[p for p in _parts(system, "systemInstruction") if isinstance(p, ir.Text)]
            if system
            else [],
            tools=_tools(data.get("tools") or []),
            tool_choice=_tool_choice(_get(data, "toolConfig")),
            generation=generation,
            thinking=_thinking(_get(config, "thinkingConfig")),
            safety=_safety(_get(data, "safetySettings")),
            stream=self.mode != "unary",
            client_options=media_format(data),
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
            if cand.sources:
                out["groundingMetadata"] = grounding_metadata(cand.sources)
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
    # The channel hands over Google's SSE in blocks of whole events, so every frame, an error
    # frame included, starts on an event boundary.

    def relay_events(self, events: bytes, first: bool) -> bytes:
        if self.mode == "sse":
            return events  # already the client's framing
        payloads = sse.payloads(events)
        if not payloads:
            return b""
        return (b"[" if first else b",\r\n") + b",\r\n".join(payloads)

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
        self.sources: dict[int, list[ir.Source]] = {}

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
        elif isinstance(event, ir.Grounding):
            ir.add_sources(self.sources.setdefault(event.index, []), event.sources)
        elif isinstance(event, ir.Progress):
            # A blank line: an SSE reader dispatches nothing, a JSON reader skips whitespace
            # (google-genai would choke on an SSE comment).
            return b"\r\n"
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
            for candidate in last["candidates"]:
                # Gemini sends what grounded an answer with its last chunk.
                sources = self.sources.get(candidate["index"])
                if sources:
                    candidate["groundingMetadata"] = grounding_metadata(sources)
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


def grounding_metadata(sources: list[ir.Source]) -> dict[str, Any]:
    chunks = [{"web": {"uri": s.url, "title": s.title or s.url}} for s in sources]
    return {"groundingChunks": chunks}


def usage_metadata(usage: ir.Usage) -> dict[str, Any]:
    out: dict[str, Any] = {
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
    if usage.estimated:
        out["estimated"] = True  # counted by gemgate; the upstream gave no counts
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
        shown = repr(role) if isinstance(role, str) else "not a string"
        raise InvalidRequest(
            f"contents[{position}].role must be 'user' or 'model', got {shown}", param="contents"
        )
    return ir.Message(
        "model" if role == "model" else "user", _parts(content, f"contents[{position}]")
    )


def _parts(content: Any, where: str) -> list[ir.Part]:
    if not isinstance(content, dict):
        raise InvalidRequest(f"{where} must be an object", param="contents")
    out: list[ir.Part] = []
    for i, raw in enumerate(array_field(content, "parts", f"{where}.parts") or ()):
        part = _part(raw, f"{where}.parts[{i}]")
        if part is not None:
            out.append(part)
    return out


def _object(data: dict[str, Any], camel: str, where: str) -> dict[str, Any] | None:
    """A message-typed field in either spelling: an object, or a 400 naming it."""
    value = _get(data, camel)
    if value is None or isinstance(value, dict):
        return value
    raise InvalidRequest(f"{where}.{camel} must be an object", param="contents")


def _string(data: dict[str, Any], camel: str, where: str) -> str | None:
    value = _get(data, camel)
    if value is None or isinstance(value, str):
        return value
    raise InvalidRequest(f"{where}.{camel} must be a string", param="contents")


def _part(raw: Any, where: str) -> ir.Part | None:
    if not isinstance(raw, dict):
        raise InvalidRequest(f"{where} must be an object", param="contents")
    signature = _string(raw, "thoughtSignature", where)
    if "text" in raw:
        text = string_field(raw, "text", f"{where}.text") or ""
        return ir.Text(text, bool(boolean_field(raw, "thought", f"{where}.thought")), signature)
    if (data := _object(raw, "inlineData", where)) is not None:
        payload = string_field(data, "data", f"{where}.inlineData.data") or ""
        declared = _string(data, "mimeType", f"{where}.inlineData")
        return input_media.inline(declared, payload, where)
    if (data := _object(raw, "fileData", where)) is not None:
        media = input_media.web_url(_string(data, "fileUri", f"{where}.fileData") or "", where)
        declared = _string(data, "mimeType", f"{where}.fileData")
        if declared:
            media.mime_type = declared
        return media
    if (call := _object(raw, "functionCall", where)) is not None:
        name = string_field(call, "name", f"{where}.functionCall.name") or ""
        args = object_field(call, "args", f"{where}.functionCall.args") or {}
        json_depth.check(args, f"{where}.functionCall.args", "contents")
        call_id = string_field(call, "id", f"{where}.functionCall.id") or name
        # Gemini has no call ids in history; results are matched to calls by name.
        return ir.ToolCall(call_id, name, args, signature)
    if (result := _object(raw, "functionResponse", where)) is not None:
        name = string_field(result, "name", f"{where}.functionResponse.name") or ""
        response = object_field(result, "response", f"{where}.functionResponse.response") or {}
        json_depth.check(response, f"{where}.functionResponse.response", "contents")
        is_error = set(response) == {"error"}
        if len(response) == 1 and set(response) & {"output", "error"}:
            output = next(iter(response.values()))
        else:
            output = response
        call_id = string_field(result, "id", f"{where}.functionResponse.id") or name
        return ir.ToolResult(call_id, name, output, is_error)
    if (code := _object(raw, "executableCode", where)) is not None:
        language = string_field(code, "language", f"{where}.executableCode.language")
        source = string_field(code, "code", f"{where}.executableCode.code") or ""
        return ir.CodeCall(language or "PYTHON", source, signature)
    if (result := _object(raw, "codeExecutionResult", where)) is not None:
        outcome = string_field(result, "outcome", f"{where}.codeExecutionResult.outcome")
        output = string_field(result, "output", f"{where}.codeExecutionResult.output") or ""
        return ir.CodeResult(outcome or "OUTCOME_OK", output)
    if signature:
        return ir.Text("", False, signature)
    raise InvalidRequest(f"{where} is a part of a kind gemgate cannot convert", param="contents")


def _tools(tools: Any) -> list[ir.Tool]:
    if not isinstance(tools, list):
        raise InvalidRequest("tools must be an array", param="tools")
    out: list[ir.Tool] = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise InvalidRequest(f"tools[{i}] must be an object", param="tools")
        for key, value in tool.items():
            camel = key if key in _BUILTINS else _camel(key)
            if camel == "functionDeclarations":
                where = f"tools[{i}].functionDeclarations"
                if not isinstance(value, list):
                    raise InvalidRequest(f"{where} must be an array", param="tools")
                out.extend(_function(d, f"{where}[{j}]") for j, d in enumerate(value))
            elif camel in _BUILTINS:
                out.append(ir.BuiltinTool(camel))  # type: ignore[arg-type]
            else:
                raise InvalidRequest(f"the tool {key!r} is only available on the gemini channel")
    return out


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


def _function(declaration: Any, where: str) -> ir.FunctionTool:
    if not isinstance(declaration, dict):
        raise InvalidRequest(f"{where} must be an object", param="tools")
    schema = _get(declaration, "parametersJsonSchema")
    if schema is None and declaration.get("parameters") is not None:
        schema = declaration["parameters"]
        json_depth.check(schema, f"{where}.parameters", "tools")
        schema = _json_schema(schema)
    if schema is not None and not isinstance(schema, dict):
        raise InvalidRequest(f"{where}.parameters must be an object", param="tools")
    return ir.FunctionTool(
        string_field(declaration, "name", f"{where}.name") or "",
        string_field(declaration, "description", f"{where}.description"),
        schema,
    )


def _json_schema(node: Any) -> Any:
    """Google's OpenAPI-style `parameters` (types in capitals) as plain JSON Schema. Callers
    bound the depth first (json_depth)."""
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
    if calling is None:
        return None
    if not isinstance(calling, dict):
        raise InvalidRequest(
            "toolConfig.functionCallingConfig must be an object", param="toolConfig"
        )
    mode = _MODES.get(
        (string_field(calling, "mode", "functionCallingConfig.mode") or "AUTO").upper(), "auto"
    )
    names = _get(calling, "allowedFunctionNames")
    if names is not None and (
        not isinstance(names, list) or not all(isinstance(n, str) for n in names)
    ):
        raise InvalidRequest(
            "toolConfig.functionCallingConfig.allowedFunctionNames must be an array of strings",
            param="toolConfig",
        )
    return ir.ToolChoice(mode, list(names) if names else None)  # type: ignore[arg-type]


# What the neutral request cannot carry to a channel that does not speak the Gemini API (the
# gemini channel relays native bodies whole and never comes here): refused, not dropped.
_UNSUPPORTED = ("cachedContent",)
_UNSUPPORTED_CONFIG = ("speechConfig", "audioTimestamp")


def _refuse_unsupported(data: dict[str, Any], config: Any) -> None:
    for name in _UNSUPPORTED:
        if _get(data, name):
            raise InvalidRequest(f"{name} is not supported on this channel", param=name)
    if isinstance(config, dict):
        for name in _UNSUPPORTED_CONFIG:
            if _get(config, name):
                raise InvalidRequest(
                    f"generationConfig.{name} is not supported on this channel",
                    param=f"generationConfig.{name}",
                )


def _generation(config: Any) -> ir.Generation:
    if not isinstance(config, dict):
        raise InvalidRequest("generationConfig must be an object", param="generationConfig")
    c = _Config(config)
    stop = c.field("stopSequences", list)
    if stop is not None and not all(isinstance(s, str) for s in stop):
        raise InvalidRequest(
            "generationConfig.stopSequences must be an array of strings", param="generationConfig"
        )
    modalities = c.field("responseModalities", list)
    if modalities is not None and not all(isinstance(m, str) for m in modalities):
        raise InvalidRequest(
            "generationConfig.responseModalities must be an array of strings",
            param="generationConfig",
        )
    json_schema = c.field("responseJsonSchema", dict)
    schema = c.field("responseSchema", dict)
    # The OpenAPI form is converted here, recursively; JSON Schema goes to the wire's cleaner.
    json_depth.check(schema, "generationConfig.responseSchema", "generationConfig")
    image_config = c.field("imageConfig", dict)
    json_depth.check(image_config, "generationConfig.imageConfig", "generationConfig")
    logprobs = c.field("logprobs", int)
    return ir.Generation(
        temperature=c.number("temperature"),
        top_p=c.number("topP"),
        top_k=c.field("topK", int),
        max_tokens=c.field("maxOutputTokens", int),
        stop=stop or [],
        candidates=c.field("candidateCount", int),
        seed=c.field("seed", int),
        presence_penalty=c.number("presencePenalty"),
        frequency_penalty=c.number("frequencyPenalty"),
        logprobs=logprobs if logprobs is not None or not c.field("responseLogprobs", bool) else 0,
        response_mime_type=c.field("responseMimeType", str),
        response_schema=json_schema or (_json_schema(schema) if schema is not None else None),
        response_modalities=modalities,
        image_config=image_config,
    )


class _Config:
    """Typed reads of a generationConfig field in either spelling."""

    _NAMES = {
        int: "an integer",
        bool: "true or false",
        str: "a string",
        list: "an array",
        dict: "an object",
    }

    def __init__(self, data: dict[str, Any], where: str = "generationConfig") -> None:
        self.data = data
        self.where = where

    def field(self, camel: str, kind: type[Any]) -> Any:
        value = _get(self.data, camel)
        if value is None:
            return None
        if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
            return value
        if kind is int and isinstance(value, float) and value.is_integer():
            return int(value)  # proto JSON takes 40.0 for an integer field, as Google does
        raise InvalidRequest(
            f"{self.where}.{camel} must be {self._NAMES[kind]}", param="generationConfig"
        )

    def number(self, camel: str) -> float | None:
        value = _get(self.data, camel)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidRequest(f"{self.where}.{camel} must be a number", param="generationConfig")
        return float(value)


def _thinking(config: Any) -> ir.Thinking | None:
    if config is None:
        return None
    if not isinstance(config, dict):
        raise InvalidRequest(
            "generationConfig.thinkingConfig must be an object", param="generationConfig"
        )
    c = _Config(config, "generationConfig.thinkingConfig")
    level = c.field("thinkingLevel", str)
    return ir.Thinking(
        budget=c.field("thinkingBudget", int),
        level=level.lower() if level else None,
        include_thoughts=c.field("includeThoughts", bool),
    )


def _safety(value: Any) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        isinstance(s, dict) and not json_depth.deeper_than(s, 2) for s in value
    ):
        raise InvalidRequest("safetySettings must be an array of objects", param="safetySettings")
    return value


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
