"""Several answers to one request, each from its own upstream call, run concurrently and
merged into one event stream as candidates 0..n-1 (image models make one image per call, so
`n` images are `n` calls)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing

from gemgate import ir

_DONE = object()


async def merged(
    answer: Callable[[], AsyncGenerator[ir.Event | ir.Batch, None]], count: int
) -> AsyncGenerator[ir.Event, None]:
    """The events of `count` calls of `answer` as they arrive: one Start, each answer's parts
    under its own candidate index, usage summed over the answers. The first failure ends
    them all."""
    queue: asyncio.Queue[tuple[int, object]] = asyncio.Queue()

    async def pump(number: int) -> None:
        try:
            async with aclosing(answer()) as events:
                async for got in events:
                    for event in got if isinstance(got, list) else (got,):
                        await queue.put((number, event))
        except Exception as exc:
            await queue.put((number, exc))
            return
        await queue.put((number, _DONE))

    tasks = [asyncio.create_task(pump(number)) for number in range(count)]
    usages = [ir.Usage() for _ in range(count)]
    started = False
    running = count
    try:
        while running:
            number, item = await queue.get()
            if item is _DONE:
                running -= 1
            elif isinstance(item, Exception):
                raise item
            elif isinstance(item, ir.Start):
                if not started:
                    started = True
                    yield item
            elif isinstance(item, ir.UsageEvent):
                usages[number] = item.usage
                yield ir.UsageEvent(_sum(usages))
            elif isinstance(item, ir.PartEvent | ir.Finish | ir.Grounding):
                item.index = item.index * count + number
                yield item
            elif isinstance(item, ir.Progress):
                yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _sum(usages: list[ir.Usage]) -> ir.Usage:
    total = ir.Usage()
    for usage in usages:
        total.prompt_tokens += usage.prompt_tokens
        total.output_tokens += usage.output_tokens
        total.thought_tokens += usage.thought_tokens
        total.cached_tokens += usage.cached_tokens
        total.tool_prompt_tokens += usage.tool_prompt_tokens
        total.total_tokens += usage.total_tokens
        total.prompt_image_tokens += usage.prompt_image_tokens
    return total
