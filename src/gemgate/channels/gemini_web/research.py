"""Deep research (`-deepsearch`) on the web app, as reference §9.2 describes it.

Turn 1 asks with the research slots (49 = 1, 54, 55, a fresh token at 3 and 4) and gets a
plan (rich field 55, or 56); turn 2, in the same chat and with the same slots, sends the plan's
confirm prompt, and the stream ends while the research runs on the server. The report is
then read with `hNvQHb` until a turn's immersive document (candidate `[30][0]`) has its
Markdown body; until then it carries a placeholder task id and an empty body. Sources come
from the document's citation field 43.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from gemgate import errors, ir
from gemgate.channels.gemini_web.client import WebSession
from gemgate.channels.gemini_web.frames import at, clean, rich_field
from gemgate.channels.gemini_web.read_chat import read_chat

CONFIRM_DEFAULT = "Start research"
_NUMBER = re.compile(r"\d+")


def prepare(inner: list[Any]) -> None:
    """A research turn's fresh `!`-token and hex nonce at slots 3 and 4, which the server
    accepts unchecked here (the tool's other slots are in the TOOLS table)."""
    inner[3] = "!" + secrets.token_urlsafe(2600)  # about 3.5 kB, as the web app's own client
    inner[4] = secrets.token_hex(16)


@dataclass(slots=True)
class Plan:
    title: str
    steps: list[str]
    eta: str
    confirm: str

    def markdown(self) -> str:
        lines = [f"Research plan: {self.title}" if self.title else "Research plan", ""]
        lines += [f"- {step}" for step in self.steps]
        if self.eta:
            lines += ["", self.eta]
        return "\n".join(lines) + "\n\n"


def find_plan(rich: Any) -> Plan | None:
    """The plan an answer proposes: `[0]` title, `[1]` steps (`[?, label, body]`), `[2]`
    the time it should take, `[3][0]` the prompt that confirms it."""
    raw = rich_field(rich, 55) or rich_field(rich, 56)
    if not isinstance(raw, list):
        return None
    steps = []
    for step in at(raw, 1) or ():
        label, body = at(step, 1), at(step, 2)
        words = [w for w in (label, body) if isinstance(w, str) and w]
        if words:
            steps.append(": ".join(words))
    title, eta, confirm = at(raw, 0), at(raw, 2), at(raw, 3, 0)
    return Plan(
        title=title if isinstance(title, str) else "",
        steps=steps,
        eta=eta if isinstance(eta, str) else "",
        confirm=confirm if isinstance(confirm, str) and confirm else CONFIRM_DEFAULT,
    )


@dataclass(slots=True)
class Report:
    text: str
    sources: list[ir.Source] = field(default_factory=list)


def report_of(candidate: list[Any]) -> Report | None:
    """The finished report of a research turn, or None (not a research turn, or running)."""
    document = at(candidate, 30, 0)
    if not isinstance(document, list) or at(document, 3) is None:
        return None  # no document, or one that is not a research report
    body = at(document, 4) or at(document, 17, 0)
    if not isinstance(body, str) or not body.strip():
        return None  # still being written
    citations = rich_field(at(document, 17, 1), 43) or rich_field(at(document, 5), 43)
    if citations is None and isinstance(at(document, 5, 0, 0, 0), str):
        citations = at(document, 5)  # the groups themselves, not a block holding them
    return Report(clean(body, final=True), sources(citations))


def sources(citations: Any) -> list[ir.Source]:
    """Citation groups (`[0][0]` a marker like " [cite: 1, 2]", `[1]` its entries in marker
    order, each `[3][0]` = `[favicon, url, title]`) as sources ordered by their number, so the
    text's `[cite: n]` names the n-th."""
    numbered: dict[int, ir.Source] = {}
    for group in citations if isinstance(citations, list) else ():
        marker = at(group, 0, 0)
        numbers = [int(n) for n in _NUMBER.findall(marker)] if isinstance(marker, str) else []
        for i, entry in enumerate(at(group, 1) or ()):
            url, title = at(entry, 3, 0, 1), at(entry, 3, 0, 2)
            if not isinstance(url, str) or not url:
                continue
            number = numbers[i] if i < len(numbers) else len(numbered) + 1
            numbered.setdefault(number, ir.Source(url, title if isinstance(title, str) else None))
    return [numbered[n] for n in sorted(numbered)]


async def awaited_report(
    session: WebSession, cid: str, *, interval: float, limit: float
) -> AsyncIterator[ir.Progress | Report]:
    """Progress while the research runs, then its report (read back every `interval`)."""
    started = time.monotonic()
    while True:
        for turn in await read_chat(session, cid):
            for candidate in turn.candidates:
                report = report_of(candidate)
                if report is not None:
                    yield report
                    return
        waited = time.monotonic() - started
        if waited + interval > limit:
            raise errors.UpstreamTimeout(
                f"the deep research was still running after {waited:.0f}s "
                f"(GEMGATE_WEB_RESEARCH_TIMEOUT is {limit:.0f}s)"
            )
        yield ir.Progress(f"deep research running, {waited:.0f}s so far")
        await asyncio.sleep(interval)


def as_reasoning(events: list[ir.Event]) -> list[ir.Event]:
    """The web app's words around a research (the plan, "I'm on it") are its reasoning; only
    the report is the answer."""
    return [
        ir.PartEvent(ir.Text(e.part.text, thought=True), e.index)
        if isinstance(e, ir.PartEvent) and isinstance(e.part, ir.Text)
        else e
        for e in events
    ]


async def carried_out(
    session: WebSession,
    cid: str,
    plan: Plan,
    confirm: Callable[[str], AsyncIterator[ir.Event]],
    *,
    interval: float,
    limit: float,
) -> AsyncIterator[ir.Event]:
    """The plan shown as reasoning, confirmed (turn 2, `confirm` sends it), and the research
    awaited: progress while it runs, then the report and its sources."""
    yield ir.PartEvent(ir.Text("\n\n" + plan.markdown(), thought=True))
    async for event in confirm(plan.confirm):
        if isinstance(event, ir.PartEvent) and isinstance(event.part, ir.Text):
            yield as_reasoning([event])[0]
    async for item in awaited_report(session, cid, interval=interval, limit=limit):
        if isinstance(item, Report):
            yield ir.PartEvent(ir.Text(item.text))
            if item.sources:
                yield ir.Grounding(item.sources)
        else:
            yield item
