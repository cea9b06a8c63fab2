"""How an admin page is made: the Jinja templates (loaded on the first page view), their filters,
the headers every page carries, and the one-time message a redirect leaves for the next page."""

from __future__ import annotations

import time
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

HERE = Path(__file__).parent
FLASH_COOKIE = "gemgate_flash"


def _ago(timestamp: float | None) -> str:
    if not timestamp:
        return "never"
    seconds = time.time() - timestamp
    if seconds < 0:
        return _in(timestamp)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return f"{int(seconds)} s ago"


def _in(timestamp: float) -> str:
    seconds = max(0, timestamp - time.time())
    if seconds >= 3600:
        return f"in {seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"in {int(seconds // 60)} min {int(seconds % 60)} s"
    return f"in {int(seconds)} s"


def _when(timestamp: float | None) -> str:
    if not timestamp:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))


@cache
def templates() -> Any:
    """The template environment, made on the first page view: a gateway whose admin page is
    never opened does not pay for Jinja in memory or start-up time."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(ago=_ago, until=_in, when=_when, num=lambda n: f"{n or 0:,}")
    return env


def render(
    request: Request,
    template: str,
    status: int = 200,
    *,
    form_leads_to: str = "",
    **context: Any,
) -> HTMLResponse:
    """A page. `form_leads_to`: an origin one of its forms is sent on to by a redirect (the
    browser holds a redirect after a form post to the page's form-action policy)."""
    flash = request.cookies.get(FLASH_COOKIE)
    context.setdefault("flash", _read_flash(flash) if flash else None)
    html = templates().get_template(template).render(request=request, **context)
    headers = _NO_STORE
    if form_leads_to:
        policy = headers["content-security-policy"]
        policy = policy.replace("form-action 'self'", f"form-action 'self' {form_leads_to}")
        headers = {**headers, "content-security-policy": policy}
    response = HTMLResponse(html, status_code=status, headers=headers)
    if flash:
        response.delete_cookie(FLASH_COOKIE, path="/admin")
    return response


# Pages hold masked secrets and once a new client key: never cached, never framed.
_NO_STORE = {
    "cache-control": "no-store",
    "x-frame-options": "DENY",
    "content-security-policy": "default-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'",
    "referrer-policy": "same-origin",
}


def _read_flash(raw: str) -> dict[str, str]:
    kind, _, text = unquote(raw).partition(":")
    return {"kind": kind if kind in ("ok", "error") else "ok", "text": text}


def back(path: str, text: str, kind: str = "ok") -> RedirectResponse:
    """Post/redirect/get, with a one-time message for the next page."""
    response = RedirectResponse(path, status_code=303)
    set_flash(response, text, kind)
    return response


def set_flash(response: Response, text: str, kind: str = "ok") -> None:
    response.set_cookie(
        FLASH_COOKIE, quote(f"{kind}:{text}"[:600]), path="/admin", httponly=True, samesite="strict"
    )
