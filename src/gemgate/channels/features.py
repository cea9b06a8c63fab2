"""What a channel serves, and the one check that refuses the rest before any upstream call.

A channel that says nothing serves everything; one that serves less names it here, so a client
gets a 400 that says what to use instead rather than an answer that silently ignored part of its
request.
"""

from __future__ import annotations

from dataclasses import dataclass

from gemgate import ir
from gemgate.errors import InvalidRequest


@dataclass(frozen=True, slots=True)
class Features:
    function_tools: bool = True
    # Built-in tools (googleSearch, codeExecution, urlContext) the channel passes upstream;
    # `ignored_builtin_tools` are accepted and dropped because the upstream does them anyway.
    builtin_tools: frozenset[str] = frozenset({"googleSearch", "codeExecution", "urlContext"})
    ignored_builtin_tools: frozenset[str] = frozenset()
    media_in: bool = True
    images_out: bool = True
    count_tokens: bool = True
    native_passthrough: bool = True
    # JSON output held to a schema or to JSON at all (response_format, responseSchema).
    structured_output: bool = True
    # Where to send a client for what this channel lacks.
    instead: str = ""


ALL = Features()


def of(channel: object) -> Features:
    features = getattr(channel, "features", None)
    return features if isinstance(features, Features) else ALL


def check(request: ir.Request, channel_id: str, features: Features) -> None:
    """Raise a 400 naming the channel and the first feature it does not serve."""
    if features is ALL:
        return
    instead = f"; use {features.instead}" if features.instead else ""
    tools: list[ir.Tool] = []
    for tool in request.tools:
        if isinstance(tool, ir.FunctionTool):
            if not features.function_tools:
                raise InvalidRequest(
                    f"function calling is not supported on {channel_id}{instead}", param="tools"
                )
            tools.append(tool)
        elif tool.kind in features.builtin_tools:
            tools.append(tool)
        elif tool.kind not in features.ignored_builtin_tools:
            raise InvalidRequest(
                f"the built-in tool {tool.kind} is not supported on {channel_id}{instead}",
                param="tools",
            )
    if len(tools) != len(request.tools):
        request.tools = tools
    choice = request.tool_choice
    if not features.function_tools and choice is not None and choice.mode == "required":
        raise InvalidRequest(
            f"function calling is not supported on {channel_id}{instead}", param="tool_choice"
        )
    if not features.function_tools and any(
        isinstance(part, ir.ToolCall | ir.ToolResult)
        for message in request.messages
        for part in message.parts
    ):
        raise InvalidRequest(
            f"function calling is not supported on {channel_id}: the conversation holds tool "
            f"calls or results{instead}",
            param="messages",
        )
    if not features.media_in and any(
        isinstance(part, ir.Media) for message in request.messages for part in message.parts
    ):
        raise InvalidRequest(f"images and files are not supported on {channel_id}{instead}")
    generation = request.generation
    if not features.structured_output and (
        generation.response_schema is not None
        or generation.response_mime_type not in (None, "text/plain")
    ):
        raise InvalidRequest(
            f"structured output (a JSON response format) is not supported on {channel_id}"
            f"{instead}",
            param="response_format",
        )
    modalities = generation.response_modalities or []
    if not features.images_out and any(m.upper() == "IMAGE" for m in modalities):
        raise InvalidRequest(
            f"image output is not supported on {channel_id}{instead}", param="modalities"
        )


def check_count_tokens(channel_id: str, features: Features) -> None:
    if not features.count_tokens:
        instead = f"; use {features.instead}" if features.instead else ""
        raise InvalidRequest(f"token counting is not supported on {channel_id}{instead}")
