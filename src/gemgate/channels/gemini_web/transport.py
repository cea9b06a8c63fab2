"""The web client's curl_cffi side: the session for plain requests and uploads, and the
streamed POST of StreamGenerate.

`WebClient.transport` imports this module on the first call to the web hosts, not at start:
curl_cffi and its libcurl take about 4 MB resident, which a gateway whose clients never use the
`gemini_official` channel would otherwise carry for nothing. Nothing else imports curl_cffi.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from curl_cffi import CurlECode, CurlMime, CurlOpt
from curl_cffi.requests import AsyncSession
from curl_cffi.requests.exceptions import RequestException

from gemgate.channels.gemini_web.client import FilePart, Reply, TooLarge, transient
from gemgate.channels.gemini_web.streaming import Head, StreamFailed, StreamingPost
from gemgate.config import Settings


class Transport:
    def __init__(self, settings: Settings) -> None:
        self.session: AsyncSession[Any] = AsyncSession(
            impersonate=settings.web_impersonate,  # type: ignore[arg-type]
            discard_cookies=True,
            timeout=(settings.connect_timeout, settings.read_timeout),
            allow_redirects=True,
            trust_env=False,
            max_clients=64,
            # Media URLs come from the web app's answers: libcurl stops a body past the limit
            # as it arrives (or at once, by its Content-Length). Pages and RPC answers are far
            # smaller than any sensible limit.
            curl_options={CurlOpt.MAXFILESIZE_LARGE: settings.web_download_max_bytes},
        )
        self.download_limit = settings.web_download_max_bytes
        self.streaming = StreamingPost(
            settings.web_impersonate, settings.connect_timeout, settings.read_timeout
        )

    async def close(self) -> None:
        self.streaming.close()
        await self.session.close()

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        body: bytes | None,
        upload: FilePart | None,
        proxy: str | None,
        redirects: bool,
    ) -> Reply:
        form = None
        if upload is not None:
            form = CurlMime()
            form.addpart(
                name=upload.name,
                content_type=upload.content_type,
                filename=upload.filename,
                data=upload.data,
            )
        try:
            response = await self.session.request(
                method,  # type: ignore[arg-type]
                url,
                headers=headers,
                data=body,
                multipart=form,
                proxy=proxy,
                allow_redirects=redirects,
            )
        except RequestException as exc:
            if exc.code == CurlECode.FILESIZE_EXCEEDED:
                raise TooLarge(self.download_limit) from None
            raise transient(f"could not reach the Gemini web app: {type(exc).__name__}") from None
        finally:
            if form is not None:
                form.close()
        return Reply(
            response.status_code,
            str(response.url),
            [v for v in response.headers.get_list("set-cookie") if v],
            response.content,
            response.headers.get("location"),
        )

    async def open_stream(
        self, url: str, headers: dict[str, str], body: bytes, proxy: str | None
    ) -> tuple[Head, AsyncGenerator[Head | bytes, None]]:
        """POST; the reply head, and the generator that goes on with the body."""
        chunks = self.streaming.post(self.session.acurl, url, headers, body, proxy)
        try:
            head = await anext(chunks)
        except StreamFailed as exc:
            await chunks.aclose()
            raise transient(f"could not reach the Gemini web app: {exc}") from None
        assert isinstance(head, Head)
        return head, chunks
