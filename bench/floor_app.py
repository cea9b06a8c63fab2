"""The floor under gemgate: a bare ASGI app under uvicorn, served as `gemgate serve` serves
(uvloop, httptools), that relays each request to the upstream with one aiohttp call and
nothing else: no keys, no routing, no translation, no usage. What it costs is what the stack
costs; whatever gemgate costs above it is gemgate's own. Used by `overhead.py` (the `floor`
rows); it speaks only the Gemini API's generateContent and streamGenerateContent, with one
fixed upstream key.

    python bench/floor_app.py --port 9300 --upstream http://127.0.0.1:9100 --key k1
"""

from __future__ import annotations

import argparse
from typing import Any

import aiohttp
import uvicorn


def make_app(upstream: str, key: str) -> Any:
    session: aiohttp.ClientSession | None = None
    headers = {"x-goog-api-key": key, "content-type": "application/json"}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal session
        if scope["type"] == "lifespan":
            await receive()  # lifespan.startup
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
            if session is not None:
                await session.close()
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["path"] == "/healthz":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if session is None:
            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        url = upstream + scope["path"]
        if scope["query_string"]:
            url += "?" + scope["query_string"].decode()
        async with session.post(url, data=body, headers=headers) as response:
            kind = response.headers.get("content-type", "application/json").encode()
            head = [(b"content-type", kind)]
            await send({"type": "http.response.start", "status": response.status, "headers": head})
            # Each read goes on as it comes: a stream's chunks too.
            async for chunk in response.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    uvicorn.run(
        make_app(args.upstream, args.key),
        host="127.0.0.1", port=args.port, loop="uvloop", http="httptools", ws="none",
        # As gemgate serves by default: uvicorn formats each access line's path even when the
        # log level then drops it (about 5 % of the floor's CPU per request).
        log_level="warning", lifespan="on", access_log=False,
    )  # fmt: skip


if __name__ == "__main__":
    main()
