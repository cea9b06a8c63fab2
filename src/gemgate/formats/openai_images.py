"""The OpenAI images API: `POST /v1/images/generations` and `POST /v1/images/edits`
(protocol notes C.6), as JSON or as an HTML form (multipart, as curl `-F` sends it).

One request becomes one IR request asking for `n` answers: the pipeline makes them by separate
upstream calls, concurrently, because image models make one image per call. What the client
wants done to the images (`size`, `output_format`, `remove_watermark`) travels as
`ir.ImageOutput` and is applied by the pipeline whatever the channel; `return_origin_image` is
for channels that keep a full-size original.

Defaults differing from OpenAI's: `response_format` is `b64_json` (what gpt-image models
return), and a request without `model` gets the operator's GEMGATE_IMAGE_MODEL.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from gemgate import image_size, input_media, ir, model_names
from gemgate.errors import GatewayError, InternalError, InvalidRequest
from gemgate.formats import form_data, openai_chat
from gemgate.formats.base import StreamEncoder, load_json_object

Action = Literal["generations", "edits"]
MAX_IMAGES = 10
_RESPONSE_FORMATS = ("b64_json", "url")
_OUTPUT_TYPES = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "jpg": "image/jpeg",
    "webp": "image/webp",
}
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off", "")
_MASK_NOTE = (
    "The last image is a mask: change only the areas where the mask is transparent and keep "
    "everything else as it is."
)


@dataclass(slots=True)
class _Fields:
    """The request's fields, from JSON or a form: scalars by name, and the images sent."""

    values: dict[str, Any]
    from_form: bool
    images: list[ir.Media] = field(default_factory=list)
    mask: ir.Media | None = None


class OpenAIImages:
    endpoint = "images"
    stream_media_type = "application/json"

    def __init__(self, action: Action, content_type: str | None, default_model: str) -> None:
        # Made per request: how the body is read depends on its Content-Type.
        self.action = action
        self.content_type = content_type
        self.default_model = default_model

    # -- request --------------------------------------------------------------------------

    def decode(self, body: bytes, path_model: str | None = None) -> ir.Request:
        fields = self._fields(body)
        prompt = _text(fields, "prompt")
        if not prompt:
            raise InvalidRequest("prompt is required", param="prompt")
        named = fields.values.get("model")
        model = model_names.check(self.default_model if named in (None, "") else named)
        if _flag(fields, "stream"):
            raise InvalidRequest("streaming image generation is not supported", param="stream")
        n = _integer(fields, "n", 1)
        if not 1 <= n <= MAX_IMAGES:
            raise InvalidRequest(f"n must be between 1 and {MAX_IMAGES}", param="n")
        try:
            size = image_size.parse(_text(fields, "size") or "auto")
        except ValueError as exc:
            raise InvalidRequest(str(exc), param="size") from None
        response_format = _text(fields, "response_format") or "b64_json"
        if response_format not in _RESPONSE_FORMATS:
            raise InvalidRequest("response_format must be b64_json or url", param="response_format")
        output_format = (_text(fields, "output_format") or "").lower()
        if output_format and output_format not in _OUTPUT_TYPES:
            raise InvalidRequest("output_format must be png, jpeg or webp", param="output_format")
        parts: list[ir.Part] = [ir.Text(prompt)]
        if self.action == "edits":
            if not fields.images:
                raise InvalidRequest("an edit needs at least one image", param="image")
            parts.extend(fields.images)
            if fields.mask is not None:
                parts += [fields.mask, ir.Text(_MASK_NOTE)]
        image_config = None
        if size is None and (_text(fields, "quality") or "").lower() in ("high", "hd"):
            image_config = {"imageSize": "2K"}
        return ir.Request(
            model=model,
            messages=[ir.Message("user", parts)],
            generation=ir.Generation(response_modalities=["IMAGE"], image_config=image_config),
            answers=n,
            image_output=ir.ImageOutput(
                width=size[0] if size else None,
                height=size[1] if size else None,
                mime_type=_OUTPUT_TYPES.get(output_format),
                remove_watermark=_flag(fields, "remove_watermark"),
                original=_flag(fields, "return_origin_image"),
            ),
            client_options={
                "model": model,
                "response_format": response_format,
                # A url answer is a gemgate link whatever GEMGATE_MEDIA_LINKS says for chat.
                "link_media": "always" if response_format == "url" else None,
            },
        )

    def _fields(self, body: bytes) -> _Fields:
        if form_data.is_form(self.content_type):
            assert self.content_type is not None
            return _form_fields(form_data.parse(body, self.content_type))
        data = load_json_object(body)
        fields = _Fields(data, from_form=False)
        if self.action == "edits":
            fields.images = _json_images(data)
            mask = data.get("mask")
            if mask is not None:
                fields.mask = _json_image(mask, "mask")
        return fields

    # -- response -------------------------------------------------------------------------

    def encode(self, response: ir.Response, request: ir.Request) -> bytes:
        as_url = request.client_options.get("response_format") == "url"
        data: list[dict[str, Any]] = []
        said: list[str] = []
        refusals: list[str] = []
        for cand in response.candidates:
            texts = [p.text for p in cand.parts if isinstance(p, ir.Text) and not p.thought]
            images = [
                p
                for p in cand.parts
                if isinstance(p, ir.Media) and p.mime_type.startswith("image/")
            ]
            revised = "".join(texts).strip() or None
            for image in images:
                if as_url:
                    url = image.uri or f"data:{image.mime_type};base64,{image.data or ''}"
                    data.append({"url": url, "revised_prompt": revised})
                else:
                    data.append({"b64_json": image.data or "", "revised_prompt": revised})
            if not images:
                said += texts
                if cand.finish_detail and cand.finish_detail != "STOP":
                    refusals.append(cand.finish_detail)
        if not data:
            raise _refused(refusals, said)
        return orjson.dumps(
            {"created": int(time.time()), "data": data, "usage": usage(response.usage)}
        )

    def stream_encoder(self, request: ir.Request) -> StreamEncoder:
        raise InternalError("the images API does not stream")

    def error_body(self, error: GatewayError) -> bytes:
        return openai_chat.OpenAIChat().error_body(error)


def _refused(reasons: list[str], said: list[str]) -> InvalidRequest:
    """No image at all: the upstream refused, and says why in a reason code, in words, or
    both."""
    why = ", ".join(dict.fromkeys(reasons))
    words = " ".join(t.strip() for t in said if t.strip())
    message = "the model made no image"
    if why:
        message += f" ({why})"
    if words:
        message += f": {words}"
    return InvalidRequest(message, code="content_policy_violation", param="prompt")


def usage(u: ir.Usage) -> dict[str, Any]:
    output = u.output_tokens + u.thought_tokens
    return {
        "total_tokens": u.total_tokens or u.prompt_tokens + output,
        "input_tokens": u.prompt_tokens,
        "output_tokens": output,
        "input_tokens_details": {
            "text_tokens": max(0, u.prompt_tokens - u.prompt_image_tokens),
            "image_tokens": u.prompt_image_tokens,
        },
    }


# -- field readers: a form gives strings, JSON gives typed values --------------------------------


def _text(fields: _Fields, key: str) -> str | None:
    value = fields.values.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{key} must be a string", param=key)
    return value.strip()


def _integer(fields: _Fields, key: str, default: int) -> int:
    value = fields.values.get(key)
    if value is None or value == "":
        return default
    if fields.from_form and isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise InvalidRequest(f"{key} must be an integer", param=key)


def _flag(fields: _Fields, key: str) -> bool:
    value = fields.values.get(key)
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise InvalidRequest(f"{key} must be true or false", param=key)


def _form_fields(form: list[form_data.FormField]) -> _Fields:
    fields = _Fields({}, from_form=True)
    for item in form:
        # `image`, `image[]`, `image[0]`: every spelling clients use for one or several files.
        base = item.name.split("[", 1)[0]
        if base in ("image", "images"):
            fields.images.append(_file_image(item, item.name))
        elif base == "mask":
            fields.mask = _file_image(item, "mask")
        else:
            fields.values[item.name] = item.text
    return fields


def _file_image(item: form_data.FormField, where: str) -> ir.Media:
    if item.filename is None and item.value.startswith((b"data:", b"http://", b"https://")):
        return _json_image(item.text.strip(), where)  # a URL given as a plain form value
    if not item.value:
        raise InvalidRequest(f"{where}: the file is empty", param=where)
    with _named(where):
        mime = input_media.checked_type(item.content_type, item.value[:32], item.filename, where)
    return _image(ir.Media(mime, data=base64.b64encode(item.value).decode()), where)


def _json_images(data: dict[str, Any]) -> list[ir.Media]:
    images = data.get("images")
    if images is None and data.get("image") is not None:
        images = data["image"] if isinstance(data["image"], list) else [data["image"]]
    if images is None:
        return []
    if not isinstance(images, list):
        raise InvalidRequest("images must be an array of {image_url}", param="images")
    return [_json_image(item, f"images[{i}]") for i, item in enumerate(images)]


def _json_image(item: Any, where: str) -> ir.Media:
    url = item.get("image_url") if isinstance(item, dict) else item
    if isinstance(url, dict):
        url = url.get("url")
    if isinstance(item, dict) and item.get("file_id"):
        raise InvalidRequest(
            f"{where}: file ids are not supported here; send the image as image_url",
            param=where,
        )
    if not isinstance(url, str) or not url:
        raise InvalidRequest(f"{where}: needs an image_url", param=where)
    with _named(where):
        if url.startswith("data:"):
            return _image(input_media.data_url(url, where), where)
        # Fetched by the pipeline, like URLs in chat messages; checked as an image there.
        return input_media.web_url(url, where)


def _image(media: ir.Media, where: str) -> ir.Media:
    if not media.mime_type.startswith("image/"):
        raise InvalidRequest(f"{where}: not an image (it is {media.mime_type})", param=where)
    return media


@contextmanager
def _named(where: str) -> Iterator[None]:
    """The shared media checks' refusals, naming this API's field rather than `messages`."""
    try:
        yield
    except InvalidRequest as refused:
        refused.param = where.split("[", 1)[0]
        raise
