"""The shared harness for a dialect's table of wire cases: a request as the
provider's client sends it, and what must come back (status, body fragments)
and be pushed out (what reached the operator)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class WireCase:
    name: str
    method: str
    path: str  # may hold {names} filled from the test's context
    body: Any = None
    status: int = 200
    contains: tuple[str, ...] = ()  # fragments the answer's body must hold
    absent: tuple[str, ...] = ()  # and must not
    content_type: str | None = None
    sent: Callable[[list[Any]], bool] | None = None  # on what the operator received
    context: dict[str, Any] = field(default_factory=dict)


async def run_case(client: httpx.AsyncClient, case: WireCase, ctx: dict[str, Any],
                   operator: Callable[[], list[Any]] | None = None) -> httpx.Response:
    path = fill(case.path, ctx)
    kwargs: dict[str, Any] = {}
    if case.body is not None:
        kwargs["content" if isinstance(case.body, (bytes, str)) else "json"] = case.body
    r = await client.request(case.method, path, **kwargs)
    assert r.status_code == case.status, f"{case.name}: {r.status_code} {r.text[:300]}"
    if case.content_type:
        assert r.headers["content-type"].startswith(case.content_type), f"{case.name}: {r.headers['content-type']}"
    for fragment in case.contains:
        assert fill(fragment, ctx) in r.text, f"{case.name}: {fragment!r} not in {r.text[:500]}"
    for fragment in case.absent:
        assert fill(fragment, ctx) not in r.text, f"{case.name}: {fragment!r} in {r.text[:500]}"
    if case.sent is not None:
        assert operator is not None
        deadline = time.monotonic() + 15  # dispatch is asynchronous
        while not case.sent(operator()):
            assert time.monotonic() < deadline, f"{case.name}: the operator did not receive what was expected"
            await asyncio.sleep(0.02)
    return r


def fill(text: str, ctx: dict[str, Any]) -> str:
    """{name} from ``ctx``; any other brace is the text's own."""
    for key, value in ctx.items():
        text = text.replace("{" + key + "}", str(value))
    return text
