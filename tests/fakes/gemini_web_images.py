"""The image half of the fake web app: generated images in answers and the Google media hosts
that serve them (reference §6.4, §8.1-§8.4, §12).

Strict where the reference says the real hosts are:
- every media URL wants the generating account's `.google.com` cookies (1PSID and a current
  1PSIDTS), and answers 403 without them or when the host-only `accounts.google.com` cookies
  (`LSID`, `__Host-…`) come along;
- the preview host (`lh3`, 127.0.0.1) redirects `gg-dl` to another host (`work.fife`,
  127.0.0.2), where `gg-dl` answers with a text pointer and `rd-gg-dl` with the bytes;
- the full-size original is reached only through `c8o8Fe` (bound to the image id and the
  turn's rid/rcid/cid) and `=d-I?alr=yes`, two text-pointer hops, then the bytes;
- every delivered file carries the visible sparkle at its documented place.
"""

from __future__ import annotations

import io
import secrets
import threading
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import orjson
from aiohttp import web
from numpy.typing import NDArray
from PIL import Image

from gemgate import watermark

MEDIA_HOST = "127.0.0.2"  # a second host, so the redirect really crosses hosts
PREVIEW = 1024
LARGE_PREVIEW = 1536  # what `=s2048-rj` gives here
ORIGINAL = 2048
_ACCOUNT_ONLY = ("LSID", "ACCOUNT_CHOOSER", "SMSV")


@dataclass
class Made:
    """One generated image and the turn that made it."""

    token: str
    image_id: str
    psid: str
    cid: str
    rid: str
    rcid: str
    seed: int


def clean_picture(width: int, height: int, seed: int = 0) -> NDArray[np.uint8]:
    """The picture under the mark: smooth and darkest in the marked corner, so the mark
    stands out and its removal can be measured."""
    x = np.linspace(220, 20, width)[None, :]
    y = np.linspace(200, 40, height)[:, None]
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    pixels[..., 0] = (x + 0 * y).astype(np.uint8)
    pixels[..., 1] = (y + 0 * x).astype(np.uint8)
    pixels[..., 2] = ((x + y) / 2 + seed * 7 % 30).astype(np.uint8)
    return pixels


def mark_place(width: int, height: int) -> tuple[int, int, int]:
    """(size, x, y) of the sparkle, as the reference documents it (§8.4)."""
    if width > 1024 and height > 1024:
        return 96, width - 96 - 64, height - 96 - 64
    return 48, width - 48 - 32, height - 48 - 32


@cache
def marked_png(width: int, height: int, seed: int = 0) -> bytes:
    pixels = clean_picture(width, height, seed).copy()
    size, x, y = mark_place(width, height)
    alpha = watermark.alpha_map(size)[..., None]
    region = pixels[y : y + size, x : x + size].astype(np.float64)
    pixels[y : y + size, x : x + size] = np.rint(alpha * 255 + (1 - alpha) * region).astype(
        np.uint8
    )
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


@cache
def clean_png(width: int, height: int, seed: int = 0) -> bytes:
    out = io.BytesIO()
    Image.fromarray(clean_picture(width, height, seed)).save(out, "PNG")
    return out.getvalue()


class ImageHost:
    """Generated images of one fake web app, and the routes that serve them."""

    def __init__(self, fake: Any) -> None:
        self.fake = fake
        self.made: dict[str, Made] = {}
        self.hops: list[tuple[str, str, int]] = []  # (host, path, status) of media requests
        self.full_size_broken = False  # c8o8Fe answers nothing (the fallback path)
        self.refuse_all = False  # every media URL is a 403 (cookies no longer good for them)
        # The older host: `gg-dl` answers with the bytes, `rd-gg-dl` does not exist.
        self.no_rd_gg_dl = False
        self.marked = True  # False: files without the sparkle (as seed 000 says of previews)
        self.media_port = 0
        self._lock = threading.Lock()
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, MEDIA_HOST, 0).start()
        self.media_port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def reset(self) -> None:
        with self._lock:
            self.hops.clear()
        self.full_size_broken = False
        self.refuse_all = False
        self.no_rd_gg_dl = False
        self.marked = True

    @property
    def preview_base(self) -> str:
        return self.fake.base_url

    @property
    def media_base(self) -> str:
        return f"http://{MEDIA_HOST}:{self.media_port}"

    # ---- answers ----------------------------------------------------------------------

    def make(self, psid: str, cid: str, rid: str, rcid: str, count: int) -> list[Any]:
        """`count` new images of a turn, as the items of rich field 7."""
        items = []
        for n in range(count):
            token = secrets.token_urlsafe(24)
            made = Made(token, f"imgid_{secrets.token_hex(6)}", psid, cid, rid, rcid, n)
            with self._lock:
                self.made[token] = made
            url = f"{self.preview_base}/gg-dl/{token}=s{PREVIEW}-rj"
            items.append([[None, None, None, [None, 1, f"image {n + 1}", url]], [made.image_id]])
        return items

    @staticmethod
    def rich(items: list[Any], sparse: bool) -> list[Any]:
        """A rich-content block holding field 7, positional or in the sparse bundle."""
        if sparse:
            return [None, None, None, {"8": [items]}]
        block: list[Any] = [None] * 9
        block[7] = [items]
        return block

    def full_size(self, payload: str, account: Any) -> Any:
        """c8o8Fe: the original's URL for an image of this account's turn."""
        if self.full_size_broken or account is None:
            return []
        try:
            call = orjson.loads(payload)
            image_id = call[0][1][0]
            rid, rcid, cid = call[1][0], call[1][1], call[1][2]
        except (orjson.JSONDecodeError, IndexError, TypeError, KeyError):
            return []
        for made in list(self.made.values()):
            if made.image_id == image_id and made.psid == account.psid:
                if (rid, rcid, cid) != (made.rid, made.rcid, made.cid):
                    return []
                return [f"{self.preview_base}/ogi/{made.token}"]
        return []

    # ---- the media hosts --------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        response = self._serve(request)
        with self._lock:
            self.hops.append((request.host.split(":")[0], request.path_qs, response.status))
        return response

    def _serve(self, request: web.Request) -> web.Response:
        path = request.path
        kind, _, rest = path.lstrip("/").partition("/")
        token, _, size = rest.partition("=")
        full = token.startswith("full-")
        made = self.made.get(token.removeprefix("full-"))
        if made is None:
            return web.Response(status=404, text="Not Found")
        if self.refuse_all or not self._cookies_ok(request, made):
            return web.Response(status=403, text="Forbidden")
        on_media_host = request.host.split(":")[0] == MEDIA_HOST
        if kind == "ogi" and not on_media_host:
            if size != "d-I" or request.query.get("alr") != "yes":
                return web.Response(status=400, text="Bad Request")
            return web.Response(text=f"{self.media_base}/gg-dl/full-{made.token}")
        if kind == "gg-dl" and not on_media_host:
            # The preview host sends the download to the usercontent host (another host).
            return web.Response(
                status=302, headers={"Location": f"{self.media_base}{request.path_qs}"}
            )
        if kind == "rd-gg-dl" and self.no_rd_gg_dl:
            return web.Response(status=404, text="Not Found")
        if kind == "gg-dl" and self.no_rd_gg_dl:
            kind = "rd-gg-dl"
        elif kind == "gg-dl":
            return web.Response(
                text=f"{self.media_base}/rd-gg-dl/{rest}", content_type="text/plain"
            )
        if kind == "rd-gg-dl" and on_media_host:
            if full:
                return self._png(ORIGINAL, ORIGINAL, made)
            if size == f"s{PREVIEW}-rj":
                return self._png(PREVIEW, PREVIEW, made)
            if size == "s2048-rj":
                return self._png(LARGE_PREVIEW, LARGE_PREVIEW, made)
            return web.Response(status=400, text="Bad Request")  # e.g. a doubled suffix
        return web.Response(status=404, text="Not Found")

    def _cookies_ok(self, request: web.Request, made: Made) -> bool:
        from tests.fakes.gemini_web import cookie_header

        cookies = cookie_header(request.headers.get("Cookie", ""))
        if any(n.startswith("__Host-") or n in _ACCOUNT_ONLY for n in cookies):
            return False  # measured: the accounts.google.com cookies make it a 403
        account = self.fake._account(cookies)
        return account is not None and account.psid == made.psid

    def _png(self, width: int, height: int, made: Made) -> web.Response:
        make = marked_png if self.marked else clean_png
        return web.Response(body=make(width, height, made.seed), content_type="image/png")
