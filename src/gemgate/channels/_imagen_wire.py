"""IR ⇄ the Gemini API's `:predict` method, which Imagen models (`imagen-*`) use instead of
generateContent: a text prompt in, base64 images out, filtered ones named by reason."""

from __future__ import annotations

from typing import Any

from gemgate import image_size, ir
from gemgate.errors import InvalidRequest


def is_imagen(model: str, methods: list[str] | None = None) -> bool:
    """Whether a model generates through `:predict`: as the model list says when it is known,
    else by Google's naming."""
    if methods is not None:
        return "predict" in methods and "generateContent" not in methods
    return model.startswith("imagen-")


def request_body(req: ir.Request, model: str) -> dict[str, Any]:
    prompt: list[str] = []
    for message in req.messages:
        for part in message.parts:
            if isinstance(part, ir.Media):
                raise InvalidRequest(
                    f"{model} makes images from text only; to edit images use a Gemini image "
                    "model such as gemini-2.5-flash-image",
                    param="model",
                )
            if isinstance(part, ir.Text) and message.role == "user" and not part.thought:
                prompt.append(part.text)
    text = "\n".join(p for p in prompt if p).strip()
    if not text:
        raise InvalidRequest("an Imagen request needs a text prompt", param="prompt")
    parameters: dict[str, Any] = {"sampleCount": 1, "includeRaiReason": True}
    output = req.image_output
    ratio = (req.generation.image_config or {}).get("aspectRatio")
    if ratio in image_size.IMAGEN_RATIOS:
        parameters["aspectRatio"] = ratio
    elif output is not None and output.width and output.height:
        parameters["aspectRatio"] = image_size.nearest_ratio(
            output.width, output.height, image_size.IMAGEN_RATIOS
        )
    return {"instances": [{"prompt": text}], "parameters": parameters}


def events(data: dict[str, Any], model: str) -> list[ir.Event]:
    out: list[ir.Event] = [ir.Start(None, model)]
    made = 0
    for prediction in data.get("predictions") or ():
        if not isinstance(prediction, dict):
            continue
        if prediction.get("bytesBase64Encoded"):
            mime = prediction.get("mimeType") or "image/png"
            out.append(ir.PartEvent(ir.Media(mime, data=prediction["bytesBase64Encoded"])))
            made += 1
        elif prediction.get("raiFilteredReason"):
            out.append(ir.PartEvent(ir.Text(str(prediction["raiFilteredReason"]))))
    # Filtered images are dropped from the answer, or only named by their reason.
    out.append(ir.Finish("stop", 0, "STOP") if made else ir.Finish("safety", 0, "RAI_FILTERED"))
    return out
