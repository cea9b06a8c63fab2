"""OpenAI Responses: `POST /v1/responses` (streamed and not), and the answers it keeps.

Requests are read by `openai_responses_request`. Answers are written by one per-request
builder, `ResponsesStream`: streamed, it sends OpenAI's event sequence as parts arrive; not
streamed, the collected answer goes through the same builder silently and the finished
response object is the body. Output items: thoughts become a `reasoning` item (its summary),
text a `message`, each tool call a `function_call`, generated images an
`image_generation_call`; executed code and search sources are written into the message text
as the chat format does.

Gemini's thought signatures ride in reasoning items' `encrypted_content` (see
`responses_signatures`) for clients that ask for it, in the stored conversation when the
answer is kept, and in the gateway's signature cache by call id in any case.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from gemgate import ir
from gemgate.errors import GatewayError, InvalidRequest
from gemgate.formats import openai_responses_request as request_format
from gemgate.formats import responses_signatures
from gemgate.formats.base import load_json_object, render_code, source_listing, sse_comment
from gemgate.formats.openai_chat import error_object
from gemgate.ids import new_id
from gemgate.services.stored_responses import StoredResponses

_INCOMPLETE: dict[str, str] = {
    "max_tokens": "max_output_tokens",
    "safety": "content_filter",
    "blocked": "content_filter",
}
# ResponseError.code has a closed set of values; these are the ones a gateway failure maps to.
_FAILED_CODE = {429: "rate_limit_exceeded"}
_DELTA_FRAME = b"event: response.output_text.delta\ndata: "


@dataclass(slots=True)
class _Keeper:
    """Where and for whom an answer is kept, with the turn that led to it."""

    responses: StoredResponses
    key_id: int
    turn: list[Any]
    previous_id: str | None


class OpenAIResponses:
    endpoint = "chat"
    stream_media_type = "text/event-stream"

    def decode(self, body: bytes, path_model: str | None = None) -> ir.Request:
        data = load_json_object(body)
        if data.get("previous_response_id") is not None:
            raise InvalidRequest(
                "previous_response_id needs the stored answers", param="previous_response_id"
            )
        return request_format.decode(data, request_format.input_items(data))

    async def decode_stored(
        self, body: bytes, responses: StoredResponses, key_id: int
    ) -> ir.Request:
        """`decode`, continuing a kept conversation when the request names one, and arranging
        for the answer to be kept when `store` is on (OpenAI's default)."""
        data = load_json_object(body)
        turn = request_format.input_items(data)
        previous = data.get("previous_response_id")
        history: list[Any] = []
        if previous is not None:
            found = (
                await responses.conversation(key_id, previous)
                if isinstance(previous, str) and previous
                else None
            )
            if found is None:
                raise InvalidRequest(
                    f"Previous response with id '{previous}' not found.",
                    param="previous_response_id",
                    code="previous_response_not_found",
                )
            history = found
        request = request_format.decode(data, history + turn)
        if data.get("store", True) is not False:
            keeper = _Keeper(responses, key_id, turn, previous if history else None)
            request.client_options["keeper"] = keeper
        return request

    def encode(self, response: ir.Response, request: ir.Request) -> bytes:
        builder = ResponsesStream(request, emit=False)
        builder.event(ir.Start(response.response_id, response.model_version))
        cand = response.candidates[0]
        for part in cand.parts:
            if not isinstance(part, ir.ToolResult):  # never in an answer
                builder.event(ir.PartEvent(part))
        if cand.sources:
            builder.event(ir.Grounding(cand.sources))
        if cand.finish is not None:
            builder.event(ir.Finish(cand.finish, detail=cand.finish_detail))
        builder.event(ir.UsageEvent(response.usage))
        builder.end()
        return builder.final

    def stream_encoder(self, request: ir.Request) -> ResponsesStream:
        return ResponsesStream(request)

    def error_body(self, error: GatewayError) -> bytes:
        return orjson.dumps({"error": error_object(error)})


class ResponsesStream:
    """One answer's output items, built part by part; with `emit`, also the SSE events a
    Responses client parses, numbered by `sequence_number`."""

    def __init__(self, request: ir.Request, *, emit: bool = True) -> None:
        options = request.client_options
        self.emit = emit
        self.id = "resp_" + new_id()
        self.created = int(time.time())
        self.model: str = options.get("model") or request.model
        self.signature_model = request.model
        self.encrypted: bool = bool(options.get("encrypted_reasoning"))
        self.echo: dict[str, Any] = options.get("echo") or {}
        self.keeper: _Keeper | None = options.get("keeper")
        self.namespaces: frozenset[str] = options.get("namespaces") or frozenset()
        self.sequence = 0
        self.started = False
        # Output items as the client sees them, and as they are kept (signatures always).
        self.output: list[dict[str, Any]] = []
        self.kept: list[dict[str, Any]] = []
        self.open: dict[str, Any] | None = None
        # Where the open item is in `output`; -1 for one the client does not see.
        self.open_index = -1
        self.open_id = ""
        self.open_text: list[str] = []
        # Whether the open reasoning item has a summary part under way (it came with thoughts).
        self.summary_open = False
        self.carried: responses_signatures.Carried | None = None
        self.sources: list[ir.Source] = []
        self.finish: ir.FinishReason | None = None
        # The latest usage event; read when the usage is shown (see UsageEvent).
        self.usage_event = ir.UsageEvent(ir.Usage())
        self.final = b""

    # -- events in --------------------------------------------------------------------------

    def event(self, event: ir.Event) -> bytes:
        out = b"" if self.started else self._begin()
        if isinstance(event, ir.PartEvent):
            if event.index == 0:
                part = event.part
                if type(part) is ir.Text and not part.thought and part.text and self._in_message:
                    return out + self._delta(part.text)  # the common case, kept short
                out += self._part(part)
        elif isinstance(event, ir.Finish):
            if event.index == 0:
                self.finish = event.reason
        elif isinstance(event, ir.UsageEvent):
            self.usage_event = event
        elif isinstance(event, ir.Grounding) and event.index == 0:
            ir.add_sources(self.sources, event.sources)
        elif isinstance(event, ir.Progress):
            out += sse_comment(event)
        return out

    def end(self) -> bytes:
        out = self._begin()
        if self.sources:
            # Sources go last, like footnotes, once the answer they support is complete.
            out += self._sources()
        out += self._close()
        status = "incomplete" if self.finish in _INCOMPLETE else "completed"
        response = self._response(status)
        if status == "incomplete":
            response["incomplete_details"] = {"reason": _INCOMPLETE[self.finish or ""]}
        self.final = orjson.dumps(response)
        self._keep()
        return out + self._send({"type": f"response.{status}", "response": response})

    def error(self, error: GatewayError) -> bytes:
        failed = self._response("failed")
        failed["error"] = {
            "code": _FAILED_CODE.get(error.status, "server_error"),
            "message": error.message,
        }
        details = error_object(error)
        out = self._begin()
        out += self._send(
            {
                "type": "error",
                "code": details["code"] or details["type"],
                "message": error.message,
                "param": error.param,
            }
        )
        return out + self._send({"type": "response.failed", "response": failed})

    # -- parts ------------------------------------------------------------------------------

    def _part(self, part: ir.Part) -> bytes:
        if isinstance(part, ir.Text):
            if part.thought:
                return self._thought(part)
            if self.open is not None and self.open["type"] == "reasoning" and part.signature:
                # Gemini often signs a thought run on the part right after it.
                self._carry().thought = self._carry().thought or part.signature
            return self._text(part.text) if part.text else b""
        if isinstance(part, ir.ToolCall):
            return self._call(part)
        if isinstance(part, ir.Media) and part.mime_type.startswith("image/") and part.data:
            return self._image(part)
        return self._text(_render(part))

    def _thought(self, part: ir.Text) -> bytes:
        out = b""
        if self.open is None or self.open["type"] != "reasoning":
            out += self._close()
            out += self._add({"id": "rs_" + new_id(), "type": "reasoning", "summary": []})
            self.summary_open = True
            if self.emit:
                out += self._send(
                    {
                        "type": "response.reasoning_summary_part.added",
                        **self._where(),
                        "summary_index": 0,
                        "part": {"type": "summary_text", "text": ""},
                    }
                )
        if part.signature:
            self._carry().thought = part.signature
        if part.text:
            self.open_text.append(part.text)
            if self.emit:
                out += self._send(
                    {
                        "type": "response.reasoning_summary_text.delta",
                        **self._where(),
                        "summary_index": 0,
                        "delta": part.text,
                    }
                )
        return out

    def _text(self, text: str) -> bytes:
        if not text:
            return b""
        out = b""
        if self.open is None or self.open["type"] != "message":
            out += self._close()
            item = {
                "id": "msg_" + new_id(),
                "type": "message",
                "role": "assistant",
                "status": "in_progress",
                "content": [],
            }
            out += self._add(item)
            if self.emit:
                out += self._send(
                    {
                        "type": "response.content_part.added",
                        **self._where(),
                        "content_index": 0,
                        "part": _output_text(""),
                    }
                )
        return out + self._delta(text)

    def _delta(self, text: str) -> bytes:
        """More text for the open message."""
        self.open_text.append(text)
        if not self.emit:
            return b""
        sequence = self.sequence
        self.sequence += 1
        event = {
            "type": "response.output_text.delta",
            "item_id": self.open_id,
            "output_index": self.open_index,
            "content_index": 0,
            "delta": text,
            "logprobs": [],
            "sequence_number": sequence,
        }
        return _DELTA_FRAME + orjson.dumps(event) + b"\n\n"

    def _call(self, call: ir.ToolCall) -> bytes:
        out = b""
        if call.signature:
            if self.open is None or self.open["type"] != "reasoning":
                # The call's signature needs a reasoning item before it to ride in; the client
                # sees it only when it asked for encrypted reasoning to replay.
                out += self._close()
                item = {"id": "rs_" + new_id(), "type": "reasoning", "summary": []}
                out += self._add(item, public=self.encrypted)
            self._carry().calls[call.id] = call.signature
        out += self._close()
        arguments = orjson.dumps(call.arguments).decode()
        call_item = {
            "id": "fc_" + new_id(),
            "type": "function_call",
            "status": "in_progress",
            "call_id": call.id,
            "name": call.name,
            "arguments": "",
        }
        namespace, dot, name = call.name.partition(request_format.NAMESPACE_SEPARATOR)
        if dot and namespace in self.namespaces:
            call_item["name"], call_item["namespace"] = name, namespace
        out += self._add(call_item)
        if self.emit:
            where = self._where()
            out += self._send(
                {"type": "response.function_call_arguments.delta", **where, "delta": arguments}
            )
            out += self._send(
                {"type": "response.function_call_arguments.done", **where, "arguments": arguments}
            )
        self.open_text.append(arguments)
        return out + self._close()

    def _image(self, media: ir.Media) -> bytes:
        out = self._close()
        item = {
            "id": "ig_" + new_id(),
            "type": "image_generation_call",
            "status": "generating",
            "result": None,
        }
        out += self._add(item)
        self.open_text.append(media.data or "")
        return out + self._close()

    def _sources(self) -> bytes:
        start = len("".join(self.open_text)) if self._in_message else 0
        listing, annotations = _listing(self.sources, start)
        self.sources = []
        out = self._text(listing)
        assert self.open is not None
        self.open["annotations"] = annotations
        return out

    # -- items ------------------------------------------------------------------------------

    def _add(self, item: dict[str, Any], public: bool = True) -> bytes:
        self.open = item
        self.open_id = item["id"]
        self.open_text = []
        self.summary_open = False
        if not public:
            self.open_index = -1
            return b""
        self.output.append(item)
        self.open_index = len(self.output) - 1
        if not self.emit:
            return b""
        shown = {**item, "summary": []} if item["type"] == "reasoning" else item
        return self._send(
            {
                "type": "response.output_item.added",
                "output_index": self.open_index,
                "item": self._shown(shown),
            }
        )

    def _close(self) -> bytes:
        item = self.open
        if item is None:
            return b""
        where = self._where()
        public = self.open_index >= 0
        self.open = None
        text = "".join(self.open_text)
        out = b""
        kind = item["type"]
        if kind == "message":
            part = _output_text(text, item.pop("annotations", []))
            item["content"] = [part]
            item["status"] = "completed"
            if self.emit:
                out += self._send(
                    {
                        "type": "response.output_text.done",
                        **where,
                        "content_index": 0,
                        "text": text,
                        "logprobs": [],
                    }
                )
                out += self._send(
                    {
                        "type": "response.content_part.done",
                        **where,
                        "content_index": 0,
                        "part": part,
                    }
                )
        elif kind == "reasoning":
            summary = {"type": "summary_text", "text": text}
            item["summary"] = [summary] if text else []
            carried, self.carried = self.carried, None
            item["encrypted_content"] = (
                responses_signatures.pack(carried) if carried is not None else None
            )
            if self.emit and public and self.summary_open:
                out += self._send(
                    {
                        "type": "response.reasoning_summary_text.done",
                        **where,
                        "summary_index": 0,
                        "text": text,
                    }
                )
                out += self._send(
                    {
                        "type": "response.reasoning_summary_part.done",
                        **where,
                        "summary_index": 0,
                        "part": summary,
                    }
                )
        elif kind == "function_call":
            item["arguments"] = text
            item["status"] = "completed"
        elif kind == "image_generation_call":
            item["result"] = text
            item["status"] = "completed"
        self.kept.append(item)
        if self.emit and public:
            out += self._send(
                {
                    "type": "response.output_item.done",
                    "output_index": self.open_index,
                    "item": self._shown(item),
                }
            )
        return out

    def _shown(self, item: dict[str, Any]) -> dict[str, Any]:
        if item["type"] == "reasoning" and not self.encrypted:
            return {k: v for k, v in item.items() if k != "encrypted_content"}
        return item

    def _where(self) -> dict[str, Any]:
        assert self.open is not None
        return {"item_id": self.open["id"], "output_index": self.open_index}

    def _carry(self) -> responses_signatures.Carried:
        if self.carried is None:
            self.carried = responses_signatures.Carried(self.signature_model)
        return self.carried

    # -- the response object ----------------------------------------------------------------

    def _begin(self) -> bytes:
        if self.started:
            return b""
        self.started = True
        if not self.emit:
            return b""
        # The same response object twice: serialised once.
        response = orjson.dumps(self._response("in_progress"))
        self.sequence = 2
        return (
            b'event: response.created\ndata: {"type":"response.created","sequence_number":0,'
            b'"response":' + response + b"}\n\nevent: response.in_progress\ndata: "
            b'{"type":"response.in_progress","sequence_number":1,"response":' + response + b"}\n\n"
        )

    def _response(self, status: str) -> dict[str, Any]:
        done = status != "in_progress"
        response: dict[str, Any] = {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "error": None,
            "incomplete_details": None,
            "model": self.model,
            "output": [self._shown(item) for item in self.output] if done else [],
            "usage": usage(self.usage_event.usage) if done else None,
            **self.echo,
        }
        if done:
            response["completed_at"] = int(time.time())
        return response

    def _send(self, event: dict[str, Any]) -> bytes:
        if not self.emit:
            return b""
        event["sequence_number"] = self.sequence
        self.sequence += 1
        return b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"

    @property
    def _in_message(self) -> bool:
        """Whether text simply continues the open message."""
        return self.open is not None and self.open["type"] == "message"

    def _keep(self) -> None:
        keeper = self.keeper
        if keeper is None:
            return
        turn = [*keeper.turn, *(_as_input(item) for item in self.kept)]
        keeper.responses.keep(
            keeper.key_id, self.id, self.final, orjson.dumps(turn), keeper.previous_id
        )


# -- helpers ----------------------------------------------------------------------------------


def _output_text(text: str, annotations: list[Any] | None = None) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": annotations or [], "logprobs": []}


def _as_input(item: dict[str, Any]) -> dict[str, Any]:
    """An output item as the input item that replays it in a later turn."""
    if item["type"] == "message":
        return {"type": "message", "role": "assistant", "content": item["content"]}
    if item["type"] == "function_call":
        keys = ("type", "call_id", "name", "namespace", "arguments")
        return {k: item[k] for k in keys if k in item}
    return item


def _render(part: ir.Part) -> str:
    code = render_code(part)
    if code is not None:
        return code
    if isinstance(part, ir.Media):
        url = part.uri or f"data:{part.mime_type};base64,{part.data or ''}"
        kind = part.mime_type.split("/")[0]
        return f"\n![image]({url})\n" if kind == "image" else f"\n[{kind}]({url})\n"
    return ""


def _listing(sources: list[ir.Source], offset: int) -> tuple[str, list[dict[str, Any]]]:
    """The source listing, and a Responses `url_citation` annotation for each of its lines."""
    listing, spans = source_listing(sources, offset)
    return listing, [
        {
            "type": "url_citation",
            "url": source.url,
            "title": source.title or source.url,
            "start_index": begin,
            "end_index": stop,
        }
        for source, begin, stop in spans
    ]


def usage(u: ir.Usage) -> dict[str, Any]:
    prompt = u.prompt_tokens + u.tool_prompt_tokens
    output = u.output_tokens + u.thought_tokens
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": u.cached_tokens},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": u.thought_tokens},
        "total_tokens": u.total_tokens or prompt + output,
    }
