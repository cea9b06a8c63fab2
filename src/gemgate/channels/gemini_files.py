"""Large media through the Gemini Files API, for the `gemini` channel.

A generateContent request can carry about 20 MB inline. When the inline media of a request
would take it past `GEMGATE_INLINE_MAX_BYTES` (counted as the base64 they travel as), the
largest of them go up through a resumable upload with the credential that will send the
request, wait until Google has processed them (state ACTIVE), and are referenced as `fileData`.
A file belongs to the project of the key that uploaded it, so uploads are remembered per
credential and content, reused while the file lives (48 hours, less a margin), and another
credential uploads again.
"""

from __future__ import annotations

import asyncio
import base64
import calendar
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
from multidict import CIMultiDict

from gemgate import errors
from gemgate.channels._http import Http
from gemgate.config import Settings
from gemgate.pool import Credential, Failure, UpstreamFailed

# A remembered upload is not used in its last hour: a request may take a while to reach Google.
EXPIRY_MARGIN = 3600.0
# A file Google does not say the expiry of is kept for this long (it lives 48 hours).
DEFAULT_LIFETIME = 47 * 3600.0
# Uploads remembered at most; the oldest are forgotten first.
MAX_REMEMBERED = 4096
_FIRST_POLL, _LONGEST_POLL = 0.1, 5.0

Classify = Callable[[int, bytes, Credential], Failure]


@dataclass(frozen=True, slots=True)
class Uploaded:
    uri: str
    mime_type: str
    # time.monotonic() after which the file is not used again
    usable_until: float


@dataclass(frozen=True, slots=True)
class Moved:
    """A part whose inline media went up as a file: what to put back if the file is gone."""

    part: dict[str, Any]
    blob: dict[str, Any]
    uploaded: Uploaded


class FilesAPI:
    def __init__(self, settings: Settings, http: Http, classify: Classify) -> None:
        self.base = settings.gemini_api_base.rstrip("/")
        self.http = http
        self.classify = classify
        self.inline_max = settings.inline_max_bytes
        self.wait = settings.files_wait
        self._known: dict[tuple[int, str], Uploaded] = {}
        self._pending: dict[tuple[int, str], asyncio.Future[Uploaded]] = {}

    async def place(self, body: dict[str, Any], credential: Credential) -> list[Moved]:
        """Move inline media of a generateContent `body` to the Files API, largest first, until
        what stays inline fits the inline limit. `body` is this attempt's own copy. Returns
        what was moved, for `unplace`."""
        blobs = [
            part
            for content in body.get("contents") or ()
            for part in content.get("parts") or ()
            if "inlineData" in part
        ]
        inline = sum(len(part["inlineData"].get("data") or "") for part in blobs)
        moved: list[Moved] = []
        if inline <= self.inline_max:
            return moved
        blobs.sort(key=lambda part: len(part["inlineData"].get("data") or ""), reverse=True)
        for part in blobs:
            if inline <= self.inline_max:
                break
            blob = part["inlineData"]
            uploaded = await self.upload(blob.get("data") or "", blob["mimeType"], credential)
            del part["inlineData"]
            part["fileData"] = {"mimeType": uploaded.mime_type, "fileUri": uploaded.uri}
            moved.append(Moved(part, blob, uploaded))
            inline -= len(blob.get("data") or "")
        return moved

    def unplace(self, moved: list[Moved], credential: Credential) -> None:
        """Put moved media back inline and forget their uploads on this credential."""
        gone = {m.uploaded.uri for m in moved}
        self._known = {
            k: v for k, v in self._known.items() if k[0] != credential.id or v.uri not in gone
        }
        for m in moved:
            m.part.pop("fileData", None)
            m.part["inlineData"] = m.blob

    @staticmethod
    def forgotten(answer: bytes) -> bool:
        """Whether an error answer says a referenced file is gone or not the key's."""
        return b"access the File" in answer or b"not in an ACTIVE state" in answer

    async def upload(self, data: str, mime_type: str, credential: Credential) -> Uploaded:
        """The file for these base64 bytes on this credential: a live earlier upload, one under
        way for another request, or a new one."""
        raw, digest = await asyncio.to_thread(_decode_and_hash, data)
        key = (credential.id, f"{digest}:{mime_type}")
        known = self._known.get(key)
        if known is not None and known.usable_until > time.monotonic():
            return known
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Uploaded] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            uploaded = await self._upload(raw, mime_type, digest, credential)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters get it, nobody else needs to
            raise
        finally:
            del self._pending[key]
        future.set_result(uploaded)
        self._remember(key, uploaded)
        return uploaded

    async def _upload(
        self, raw: bytes, mime_type: str, digest: str, credential: Credential
    ) -> Uploaded:
        secret = {"x-goog-api-key": credential.secret["api_key"]}
        start = {
            **secret,
            "content-type": "application/json",
            "x-goog-upload-protocol": "resumable",
            "x-goog-upload-command": "start",
            "x-goog-upload-header-content-length": str(len(raw)),
            "x-goog-upload-header-content-type": mime_type,
        }
        meta = orjson.dumps({"file": {"displayName": f"gemgate-{digest[:16]}"}})
        status, headers, answer = await self._send(
            "POST", f"{self.base}/upload/v1beta/files", meta, start, credential
        )
        self._check(status, answer, credential)
        session = headers.get("x-goog-upload-url")
        if not session:
            raise _broken("the Files API gave no upload URL")
        finish = {
            **secret,
            "x-goog-upload-command": "upload, finalize",
            "x-goog-upload-offset": "0",
        }
        status, _, answer = await self._send(
            "POST", self._same_host(session), raw, finish, credential
        )
        self._check(status, answer, credential)
        file = await self._until_active(_file(_json(answer)), credential)
        return Uploaded(
            uri=str(file["uri"]),
            mime_type=str(file.get("mimeType") or mime_type),
            usable_until=time.monotonic() + _lifetime(file) - EXPIRY_MARGIN,
        )

    async def _until_active(self, file: dict[str, Any], credential: Credential) -> dict[str, Any]:
        """Poll the file until Google has processed it (videos take a while)."""
        if not file.get("name") or not file.get("uri"):
            raise _broken("the Files API answered an upload without a file name or URI")
        delay, deadline = _FIRST_POLL, time.monotonic() + self.wait
        headers = {"x-goog-api-key": credential.secret["api_key"]}
        while file.get("state", "ACTIVE") == "PROCESSING":
            if time.monotonic() + delay > deadline:
                raise errors.UpstreamTimeout(
                    f"Gemini was still processing the uploaded file after {self.wait:g}s"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, _LONGEST_POLL)
            status, _, answer = await self._send(
                "GET", f"{self.base}/v1beta/{file['name']}", None, headers, credential
            )
            self._check(status, answer, credential)
            file = {**file, **_file(_json(answer))}
        if file.get("state") == "FAILED":
            reason = (file.get("error") or {}).get("message") or file.get("state")
            raise errors.InvalidRequest(f"Gemini could not process the media: {reason}")
        return file

    async def _send(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: dict[str, str],
        credential: Credential,
    ) -> tuple[int, CIMultiDict[str], bytes]:
        session, proxy = self.http.via(credential.proxy)
        async with session.request(
            method, url, data=body, headers=headers, proxy=proxy
        ) as response:
            return response.status, response.headers.copy(), await response.read()

    def _check(self, status: int, answer: bytes, credential: Credential) -> None:
        if status != 200:
            raise UpstreamFailed(self.classify(status, answer, credential))

    def _same_host(self, url: str) -> str:
        """An upload URL on the configured base's host: a gateway behind a proxy or a test
        double keeps every call there (as Google's own SDK does)."""
        base, given = urlsplit(self.base), urlsplit(url)
        return urlunsplit((base.scheme, base.netloc, given.path, given.query, ""))

    def _remember(self, key: tuple[int, str], uploaded: Uploaded) -> None:
        if len(self._known) >= MAX_REMEMBERED:
            now = time.monotonic()
            self._known = {k: v for k, v in self._known.items() if v.usable_until > now}
            while len(self._known) >= MAX_REMEMBERED:
                del self._known[next(iter(self._known))]
        self._known[key] = uploaded


def _decode_and_hash(data: str) -> tuple[bytes, str]:
    raw = base64.b64decode(data)
    return raw, hashlib.sha256(raw).hexdigest()


def _json(answer: bytes) -> dict[str, Any]:
    try:
        found = orjson.loads(answer)
    except orjson.JSONDecodeError:
        raise _broken("the Files API sent a reply that is not JSON") from None
    return found if isinstance(found, dict) else {}


def _file(answer: dict[str, Any]) -> dict[str, Any]:
    """The File resource: wrapped in `file` after an upload, bare when fetched."""
    inner = answer.get("file")
    return inner if isinstance(inner, dict) else answer


def _lifetime(file: dict[str, Any]) -> float:
    expires = file.get("expirationTime")
    if isinstance(expires, str):
        try:
            when = calendar.timegm(time.strptime(expires[:19], "%Y-%m-%dT%H:%M:%S"))
        except ValueError:
            return DEFAULT_LIFETIME
        return max(0.0, when - time.time())
    return DEFAULT_LIFETIME


def _broken(message: str) -> UpstreamFailed:
    return UpstreamFailed(Failure("retry", errors.UpstreamError(message), reason=message))
