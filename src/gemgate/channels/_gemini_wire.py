"""IR ⇄ generateContent JSON, shared by the `gemini` and `gemini_cli` channels.

`request_body` turns an IR request into the body Google expects for a given upstream model;
`ChunkReader` turns each GenerateContentResponse (a whole answer or one stream chunk) into IR
events; `parse_google_error` reads google.rpc.Status error bodies.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from gemgate import image_size, ir
from gemgate.channels._gemini_schema import clean_schema
from gemgate.errors import GatewayError, InvalidRequest, from_status
from gemgate.ids import new_id

# Literal values Google accepts in place of a signature for history it did not produce.
SIGNATURE_SENTINELS = frozenset(
    {"skip_thought_signature_validator", "context_engineering_is_the_way_to_go"}
)
BYPASS_SIGNATURE = "skip_thought_signature_validator"
MAX_STOP_SEQUENCES = 5

_FINISH: dict[str, ir.FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "max_tokens",
    **{
        reason: "safety"
        for reason in (
            "SAFETY",
            "RECITATION",
            "BLOCKLIST",
            "PROHIBITED_CONTENT",
            "SPII",
            "LANGUAGE",
            "IMAGE_SAFETY",
            "IMAGE_PROHIBITED_CONTENT",
            "IMAGE_RECITATION",
        )
    },
}


# -- request ----------------------------------------------------------------------------------


def request_body(req: ir.Request, model: str) -> dict[str, Any]:
    body: dict[str, Any] = {"contents": _contents(req)}
    system = [{"text": t.text} for t in req.system if t.text]
    if system and req.messages:
        body["systemInstruction"] = {"parts": system}
    tools = _tools(req.tools)
    if tools:
        body["tools"] = tools
        tool_config = _tool_config(req.tool_choice)
        if tool_config:
            body["toolConfig"] = tool_config
    generation = generation_config(req, model)
    if generation:
        body["generationConfig"] = generation
    if req.safety:
        body["safetySettings"] = req.safety
    return body


def _contents(req: ir.Request) -> list[dict[str, Any]]:
    if not req.messages:
        # Gemini needs at least one content; a system-only request becomes the user's turn.
        texts = [{"text": t.text} for t in req.system if t.text]
        if not texts:
            raise InvalidRequest("the request has no messages", param="messages")
        return [{"role": "user", "parts": texts}]
    contents: list[dict[str, Any]] = []
    for message in req.messages:
        parts = _parts(message)
        if not parts:
            continue
        if contents and contents[-1]["role"] == message.role:
            # Gemini wants turns to alternate; consecutive same-role messages are one turn.
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": message.role, "parts": parts})
    if not contents:
        raise InvalidRequest("every message is empty", param="messages")
    return contents


def _parts(message: ir.Message) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    first_call = True
    for part in message.parts:
        if isinstance(part, ir.Text):
            if part.thought:
                # Thought text is only worth sending back with its signature; unsigned, Gemini
                # ignores it.
                if part.signature and (sig := normalise_signature(part.signature)):
                    out.append({"text": part.text, "thought": True, "thoughtSignature": sig})
                continue
            if not part.text and not part.signature:
                continue
            wire: dict[str, Any] = {"text": part.text}
            if part.signature and (sig := normalise_signature(part.signature)):
                wire["thoughtSignature"] = sig
            out.append(wire)
        elif isinstance(part, ir.ToolCall):
            call: dict[str, Any] = {"functionCall": {"name": part.name, "args": part.arguments}}
            sig = normalise_signature(part.signature) if part.signature else None
            if sig is None and first_call and message.role == "model":
                # Gemini 3 rejects a function-call turn whose first call has no signature; when
                # the client lost it, the documented bypass keeps the conversation going.
                sig = BYPASS_SIGNATURE
            if sig:
                call["thoughtSignature"] = sig
            first_call = False
            out.append(call)
        elif isinstance(part, ir.ToolResult):
            key = "error" if part.is_error else "output"
            out.append({"functionResponse": {"name": part.name, "response": {key: part.output}}})
            out.extend(_media(m) for m in part.media)
        elif isinstance(part, ir.Media):
            out.append(_media(part))
        elif isinstance(part, ir.CodeCall):
            code: dict[str, Any] = {
                "executableCode": {"language": part.language, "code": part.code}
            }
            if part.signature and (sig := normalise_signature(part.signature)):
                code["thoughtSignature"] = sig
            out.append(code)
        elif isinstance(part, ir.CodeResult):
            out.append({"codeExecutionResult": {"outcome": part.outcome, "output": part.output}})
    return _tool_results_first(out)


def _tool_results_first(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Function responses must directly answer the preceding calls; other parts of the same
    # user turn (a follow-up question, say) go after them.
    if not any("functionResponse" in p for p in parts):
        return parts
    answers = [p for p in parts if "functionResponse" in p]
    return answers + [p for p in parts if "functionResponse" not in p]


def _media(media: ir.Media) -> dict[str, Any]:
    if media.uri:
        return {"fileData": {"mimeType": media.mime_type, "fileUri": media.uri}}
    return {"inlineData": {"mimeType": media.mime_type, "data": media.data or ""}}


def normalise_signature(signature: str) -> str | None:
    """Standard padded base64 as Google issued it, or None when it is not a signature at all.
    Clients and proxies turn signatures into URL-safe base64 or drop the padding."""
    if signature in SIGNATURE_SENTINELS:
        return signature
    fixed = signature.replace("-", "+").replace("_", "/")
    fixed += "=" * (-len(fixed) % 4)
    try:
        base64.b64decode(fixed, validate=True)
    except (binascii.Error, ValueError):
        return None
    return fixed


def _tools(tools: list[ir.Tool]) -> list[dict[str, Any]]:
    declarations: list[dict[str, Any]] = []
    builtins: list[dict[str, Any]] = []
    for tool in tools:
        if isinstance(tool, ir.FunctionTool):
            declaration: dict[str, Any] = {"name": tool.name}
            if tool.description:
                declaration["description"] = tool.description
            schema = (
                _cleaned(tool.parameters, f"tool {tool.name!r}", "tools")
                if tool.parameters
                else None
            )
            if schema:
                declaration["parametersJsonSchema"] = schema
            declarations.append(declaration)
        elif {tool.kind: {}} not in builtins:
            builtins.append({tool.kind: {}})
    out = [{"functionDeclarations": declarations}] if declarations else []
    return out + builtins


def _cleaned(schema: dict[str, Any], owner: str, param: str | None) -> dict[str, Any]:
    try:
        return clean_schema(schema)
    except InvalidRequest as error:
        raise InvalidRequest(f"{owner}: {error.message}", param=param) from None


def _tool_config(choice: ir.ToolChoice | None) -> dict[str, Any] | None:
    if choice is None or choice.mode == "auto":
        return None
    if choice.mode == "none":
        return {"functionCallingConfig": {"mode": "NONE"}}
    config: dict[str, Any] = {"mode": "ANY"}
    if choice.names:
        config["allowedFunctionNames"] = list(choice.names)
    return {"functionCallingConfig": config}


def generation_config(req: ir.Request, model: str) -> dict[str, Any]:
    g = req.generation
    config: dict[str, Any] = {}
    for key, value in (
        ("temperature", g.temperature),
        ("topP", g.top_p),
        ("topK", g.top_k),
        ("maxOutputTokens", g.max_tokens),
        ("seed", g.seed),
        ("presencePenalty", g.presence_penalty),
        ("frequencyPenalty", g.frequency_penalty),
        ("responseMimeType", g.response_mime_type),
        ("responseModalities", g.response_modalities),
        ("imageConfig", image_config(req, model)),
    ):
        if value is not None:
            config[key] = value
    if g.stop:
        if len(g.stop) > MAX_STOP_SEQUENCES:
            raise InvalidRequest(
                f"Gemini accepts at most {MAX_STOP_SEQUENCES} stop sequences, got {len(g.stop)}",
                param="stop",
            )
        config["stopSequences"] = list(g.stop)
    if g.candidates is not None and g.candidates > 1:
        config["candidateCount"] = g.candidates
    if g.logprobs is not None:
        config["responseLogprobs"] = True
        if g.logprobs > 0:
            config["logprobs"] = g.logprobs
    if g.response_schema is not None:
        config["responseJsonSchema"] = _cleaned(g.response_schema, "the response schema", None)
        config.setdefault("responseMimeType", "application/json")
    thinking = thinking_config(req.thinking, model)
    if thinking:
        config["thinkingConfig"] = thinking
    if "AUDIO" in (g.response_modalities or ()):
        # A voice means something only to a model asked to answer in audio.
        speech = speech_config(g.speech)
        if speech:
            config["speechConfig"] = speech
    return config


def speech_config(speech: ir.Speech | None) -> dict[str, Any] | None:
    if speech is None:
        return None
    config: dict[str, Any] = {}
    if speech.voice:
        config["voiceConfig"] = {"prebuiltVoiceConfig": {"voiceName": speech.voice}}
    if speech.language:
        config["languageCode"] = speech.language
    return config or None


def speech_request_body(req: ir.Request, model: str) -> dict[str, Any]:
    """The body for a speech-only model, which reads one text aloud: the last user message's,
    with any system text before it as direction ("Say cheerfully: ..."). Such models take no
    system instruction and no tools, and answer in audio only."""
    if req.tools:
        raise InvalidRequest(f"{model} is a speech model: it cannot use tools", param="tools")
    text = ir.spoken_text(req)
    if not text:
        raise InvalidRequest(
            f"{model} is a speech model: it reads the last user message aloud, which has no text",
            param="messages",
        )
    direction = " ".join(t.text.strip() for t in req.system if t.text.strip())
    prompt = f"{direction.rstrip(':')}: {text}" if direction else text
    config = generation_config(req, model)
    config["responseModalities"] = ["AUDIO"]
    config.pop("thinkingConfig", None)  # speech models do not think
    speech = speech_config(req.generation.speech)
    if speech:
        config["speechConfig"] = speech
    body: dict[str, Any] = {
        "contents": [{"role": "user", "parts": [{"text": prompt}]}],
        "generationConfig": config,
    }
    if req.safety:
        body["safetySettings"] = req.safety
    return body


def image_config(req: ir.Request, model: str) -> dict[str, Any] | None:
    """imageConfig for this model: the client's own, or the shape nearest the exact size the
    client wants (the pipeline then makes it exactly that size)."""
    config = dict(req.generation.image_config or {})
    output = req.image_output
    if output is not None and output.width and output.height and "aspectRatio" not in config:
        # Only the ratios every image model takes: a very wide or tall ask gets the nearest of
        # them, then cropped, rather than a 400 from a model without 8:1.
        config["aspectRatio"] = image_size.nearest_ratio(output.width, output.height)
        config.setdefault("imageSize", image_size.size_class(output.width, output.height))
    if "imageSize" in config and not takes_image_size(model):
        # Gemini 2.x image models reject imageSize; their one size is about 1K.
        del config["imageSize"]
    return config or None


def takes_image_size(model: str) -> bool:
    return re.match(r"gemini-[3-9]", model.lower()) is not None


# -- thinking ---------------------------------------------------------------------------------

_LEVELS = ("minimal", "low", "medium", "high")
_EFFORT_BUDGET = {"minimal": 1024, "low": 1024, "medium": 8192, "high": 24576}


@dataclass(frozen=True, slots=True)
class _ThinkingModel:
    uses_levels: bool
    levels: tuple[str, ...] = _LEVELS
    min_budget: int = 0
    max_budget: int = 24576
    can_disable: bool = True


def _thinking_model(model: str) -> _ThinkingModel:
    name = model.lower()
    if re.match(r"gemini-[3-9]", name):
        if "pro" in name:
            levels = ("low", "high") if name.startswith("gemini-3-") else ("low", "medium", "high")
            return _ThinkingModel(True, levels, can_disable=False)
        return _ThinkingModel(True, can_disable=False)
    if "2.5-pro" in name:
        return _ThinkingModel(False, min_budget=128, max_budget=32768, can_disable=False)
    if "2.5-flash-lite" in name:
        return _ThinkingModel(False, min_budget=512)
    return _ThinkingModel(False)


def thinking_config(thinking: ir.Thinking | None, model: str) -> dict[str, Any] | None:
    """Resolve what the client asked for into what this model accepts: a level for Gemini 3,
    a budget within range for 2.5, never both."""
    if thinking is None:
        return None
    spec = _thinking_model(model)
    config: dict[str, Any] = {}
    if spec.uses_levels:
        level = _level_for(thinking, spec)
        if level is not None:
            config["thinkingLevel"] = level
    else:
        budget = _budget_for(thinking, spec)
        if budget is not None:
            config["thinkingBudget"] = budget
    if thinking.include_thoughts is not None:
        off = config.get("thinkingBudget") == 0
        config["includeThoughts"] = thinking.include_thoughts and not off
    return config or None


def _level_for(thinking: ir.Thinking, spec: _ThinkingModel) -> str | None:
    wanted: str | None
    if thinking.level:
        wanted = thinking.level.lower()
    elif thinking.effort:
        effort = thinking.effort.lower()
        wanted = {"none": "minimal", "max": "high", "xhigh": "high"}.get(effort, effort)
    elif thinking.budget is not None:
        if thinking.budget < 0:
            return None
        wanted = _level_of_budget(thinking.budget)
    else:
        return None
    if wanted not in _LEVELS:
        raise InvalidRequest(
            f"unknown thinking level or effort {wanted!r}", param="reasoning_effort"
        )
    # A level the model lacks becomes the next one up, or its highest.
    for level in _LEVELS[_LEVELS.index(wanted) :]:
        if level in spec.levels:
            return level
    return spec.levels[-1]


def _level_of_budget(budget: int) -> str:
    if budget <= 512:
        return "minimal"
    if budget <= 1024:
        return "low"
    if budget <= 8192:
        return "medium"
    return "high"


def _budget_for(thinking: ir.Thinking, spec: _ThinkingModel) -> int | None:
    if thinking.budget is not None:
        budget = thinking.budget
    elif thinking.effort or thinking.level:
        word = (thinking.effort or thinking.level or "").lower()
        if word == "none":
            budget = 0
        elif word in ("max", "xhigh"):
            budget = spec.max_budget
        elif word in _EFFORT_BUDGET:
            budget = _EFFORT_BUDGET[word]
        else:
            raise InvalidRequest(f"unknown thinking effort {word!r}", param="reasoning_effort")
    else:
        return None
    if budget < 0:
        return -1
    if budget == 0:
        return 0 if spec.can_disable else spec.min_budget
    return max(spec.min_budget, min(budget, spec.max_budget))


# -- response ---------------------------------------------------------------------------------


class ChunkReader:
    """Reads the GenerateContentResponse objects of one answer, in order, into IR events."""

    def __init__(self) -> None:
        self._started = False
        # Usage is cumulative and repeated on every chunk: read once per upstream read (the
        # last chunk's), and only when it changed, rather than one more event per chunk.
        self._usage: dict[str, Any] | None = None

    def batch(
        self,
        payloads: list[bytes],
        unwrap: Callable[[Any], dict[str, Any]] | None = None,
    ) -> tuple[ir.Batch, GatewayError | orjson.JSONDecodeError | None]:
        """The events of the chunks one read brought (their JSON `payloads`, each `unwrap`ped
        first if given). A chunk that fails (an error chunk, broken JSON) ends the batch: the
        events before it are kept, and the failure is handed back to be raised once they have
        been passed on, so that no event the client could have had is lost."""
        batch: ir.Batch = []
        usage = None
        try:
            for data in payloads:
                chunk = orjson.loads(data)
                if unwrap is not None:
                    chunk = unwrap(chunk)
                self._read(chunk, batch)
                usage = chunk.get("usageMetadata") or usage
        except (GatewayError, orjson.JSONDecodeError) as failure:
            self._read_usage(usage, batch)
            return batch, failure
        self._read_usage(usage, batch)
        return batch, None

    def events(self, chunk: dict[str, Any]) -> list[ir.Event]:
        out: list[ir.Event] = []
        self._read(chunk, out)
        self._read_usage(chunk.get("usageMetadata"), out)
        return out

    def _read_usage(self, usage: dict[str, Any] | None, out: list[ir.Event]) -> None:
        if usage and usage != self._usage:
            self._usage = usage
            out.append(ir.UsageEvent.later(usage, read_usage))

    def _read(self, chunk: dict[str, Any], out: list[ir.Event]) -> None:
        """A chunk's events but its usage, onto `out`. Run on every streamed chunk: keys are
        tested before they are read, so that a chunk allocates nothing it does not carry."""
        if "error" in chunk:
            raise error_from_status(chunk["error"], 500)
        if not self._started:
            self._started = True
            version = chunk.get("modelVersion")
            if isinstance(version, str) and version.startswith("models/"):
                version = version[len("models/") :]
            out.append(ir.Start(chunk.get("responseId"), version))
        candidates = chunk.get("candidates")
        if not candidates:
            feedback = chunk.get("promptFeedback")
            if feedback and feedback.get("blockReason"):
                out.append(ir.Finish("blocked", 0, feedback["blockReason"]))
            return
        for cand in candidates:
            index = cand.get("index", 0)
            content = cand.get("content")
            parts = content.get("parts") if content else None
            if parts:
                for part in parts:
                    converted = _read_part(part)
                    if converted is not None:
                        out.append(ir.PartEvent(converted, index))
            if "groundingMetadata" in cand or "urlContextMetadata" in cand:
                grounding = _grounding(cand, index)
                if grounding is not None:
                    out.append(grounding)
            reason = cand.get("finishReason")
            if reason:
                out.append(ir.Finish(_FINISH.get(reason, "other"), index, reason))


def _grounding(cand: dict[str, Any], index: int) -> ir.Grounding | None:
    """Pages a Google Search or URL-context answer drew on, for the client to cite."""
    metadata = cand.get("groundingMetadata") or {}
    sources = [
        ir.Source(web["uri"], web.get("title"))
        for chunk in metadata.get("groundingChunks") or ()
        if isinstance(web := chunk.get("web"), dict) and web.get("uri")
    ]
    for entry in (cand.get("urlContextMetadata") or {}).get("urlMetadata") or ():
        if entry.get("retrievedUrl") and entry.get("urlRetrievalStatus", "").endswith("SUCCESS"):
            sources.append(ir.Source(entry["retrievedUrl"]))
    if not sources:
        return None
    return ir.Grounding(sources, index, list(metadata.get("webSearchQueries") or ()))


def _read_part(
    part: dict[str, Any],
) -> ir.Text | ir.ToolCall | ir.Media | ir.CodeCall | ir.CodeResult | None:
    signature = part.get("thoughtSignature")
    if "text" in part:
        if not part["text"] and not signature:
            return None
        return ir.Text(part["text"], bool(part.get("thought")), signature)
    if "functionCall" in part:
        call = part["functionCall"]
        return ir.ToolCall(new_call_id(), call.get("name", ""), call.get("args") or {}, signature)
    if "inlineData" in part:
        if part.get("thought"):
            return None  # an image model's draft, not part of the answer
        data = part["inlineData"]
        return ir.Media(data.get("mimeType", "application/octet-stream"), data=data.get("data", ""))
    if "fileData" in part:
        data = part["fileData"]
        return ir.Media(data.get("mimeType", "application/octet-stream"), uri=data.get("fileUri"))
    if "executableCode" in part:
        code = part["executableCode"]
        return ir.CodeCall(code.get("language", "PYTHON"), code.get("code", ""), signature)
    if "codeExecutionResult" in part:
        result = part["codeExecutionResult"]
        return ir.CodeResult(result.get("outcome", "OUTCOME_OK"), result.get("output", ""))
    return None


def new_call_id() -> str:
    return "call_" + new_id()


def read_usage(usage: dict[str, Any]) -> ir.Usage:
    # Read once per streamed read (usage is cumulative): plain lookups, in field order.
    get = usage.get
    images = 0
    details = get("promptTokensDetails")
    if details:
        for detail in details:
            if isinstance(detail, dict) and detail.get("modality") == "IMAGE":
                images += detail.get("tokenCount", 0)
    return ir.Usage(
        get("promptTokenCount", 0),
        get("candidatesTokenCount", 0),
        get("thoughtsTokenCount", 0),
        get("cachedContentTokenCount", 0),
        get("toolUsePromptTokenCount", 0),
        get("totalTokenCount", 0),
        images,
    )


def usage_in_tail(tail: bytes) -> ir.Usage | None:
    """The last `usageMetadata` object in the tail of a relayed answer (unary, SSE or array):
    usage is cumulative, so the last one is the answer's. Only a small object is parsed."""
    at = tail.rfind(b'"usageMetadata"')
    start = tail.find(b"{", at) if at >= 0 else -1
    if start < 0:
        return None
    # Usage holds numbers and small arrays of objects, no strings with braces in them. Only
    # the braces are visited (a byte-by-byte loop cost more than the rest of the relay).
    depth = 0
    for brace in _BRACES.finditer(tail, start):
        depth += 1 if brace[0] == b"{" else -1
        if depth == 0:
            try:
                data = orjson.loads(tail[start : brace.end()])
            except orjson.JSONDecodeError:
                return None
            return read_usage(data) if isinstance(data, dict) else None
    return None


_BRACES = re.compile(rb"[{}]")


# -- errors -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GoogleError:
    http_status: int
    status: str
    message: str
    reason: str | None
    retry_delay: float | None
    per_day: bool
    # Whether the body was a google.rpc.Status at all, rather than (say) a proxy's HTML page.
    structured: bool = True
    # ErrorInfo's metadata (quotaResetTimeStamp, model, ...), for channels that need more.
    metadata: dict[str, Any] = field(default_factory=dict)


# How much of an error body that is not Google's JSON is shown to the client.
EXCERPT_CHARS = 200
_TAG = re.compile(r"<[^>]*>")


def parse_google_error(http_status: int, body: bytes) -> GoogleError:
    """Read a google.rpc.Status body (also wrapped in a one-element array). Anything else (a
    proxy's HTML page, a crashed upstream's text) becomes a message with the status and a
    short, readable excerpt."""
    try:
        data: Any = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, list) and data:
        data = data[0]
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return GoogleError(
            http_status, "", _unstructured(http_status, body), None, None, False, False
        )
    message = error.get("message")
    if not isinstance(message, str) or not message:
        message = f"upstream answered HTTP {http_status}"
    reason, delay, per_day = None, None, False
    info: dict[str, Any] = {}
    details = error.get("details")
    for detail in details if isinstance(details, list) else ():
        if not isinstance(detail, dict):
            continue
        kind = str(detail.get("@type", ""))
        if kind.endswith("ErrorInfo"):
            found = detail.get("reason")
            reason = found if isinstance(found, str) else None
            metadata = detail.get("metadata")
            if isinstance(metadata, dict):
                info = metadata
            reset = metadata.get("quotaResetDelay") if isinstance(metadata, dict) else None
            if delay is None and isinstance(reset, str):
                delay = parse_duration(reset)
        elif kind.endswith("RetryInfo") and isinstance(detail.get("retryDelay"), str):
            delay = parse_duration(detail["retryDelay"])
        elif kind.endswith("QuotaFailure") and isinstance(detail.get("violations"), list):
            per_day = any(
                isinstance(v, dict) and "PerDay" in str(v.get("quotaId", ""))
                for v in detail["violations"]
            )
    if delay is None:
        delay = _delay_in_message(message)
    status = error.get("status")
    return GoogleError(
        http_status,
        status if isinstance(status, str) else "",
        message,
        reason,
        delay,
        per_day,
        metadata=info,
    )


def _unstructured(http_status: int, body: bytes) -> str:
    text = body[: EXCERPT_CHARS * 20].decode("utf-8", "replace")
    text = " ".join(_TAG.sub(" ", text).split())
    if len(text) > EXCERPT_CHARS:
        text = text[:EXCERPT_CHARS] + "…"
    said = f": {text}" if text else " with an empty body"
    return f"upstream answered HTTP {http_status}, not with a Google error{said}"


_DURATION_PART = re.compile(r"([0-9]*\.?[0-9]+)(ms|h|m|s)")
_RETRY_IN_MESSAGE = re.compile(r"(?:retry in|reset after|after)\s+([0-9hms.]+)", re.IGNORECASE)


def parse_duration(text: str) -> float | None:
    """Seconds in a proto Duration ("38s", "0.5s") or a Go duration ("539ms", "1h2m3s")."""
    total, matched = 0.0, False
    for number, unit in _DURATION_PART.findall(text.strip()):
        matched = True
        total += float(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total if matched else None


def _delay_in_message(message: str) -> float | None:
    found = _RETRY_IN_MESSAGE.search(message)
    return parse_duration(found.group(1).rstrip(".")) if found else None


def error_from_status(error: dict[str, Any], default_status: int) -> GatewayError:
    """A gateway error for an error object that arrived inside a 200 stream."""
    code = error.get("code")
    status = code if isinstance(code, int) else default_status
    return from_status(status, str(error.get("message") or "upstream error"))
