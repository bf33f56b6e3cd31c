"""A callback receiver for the benchmarks: answers every POST with 200 at once
and counts what it got, by message state. ``GET /count`` returns the counts.

Raw asyncio + httptools (on uvloop when installed) so that it costs the
platform under test as little CPU as possible on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
from typing import Any

import httptools

COUNTS: dict[str, int] = {"requests": 0}
IDS: set[int] = set()  # messages that reached a final state, once each
_STATE = re.compile(rb'"state":"([a-z]+)"')
_ID = re.compile(rb'"id":(\d+)')
_FINAL = {b"delivered", b"undelivered", b"failed", b"rejected", b"expired"}

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok"


class Handler(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.body: list[bytes] = []
        self.url = b""
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.url.startswith(b"/count"):
            out = json.dumps({**COUNTS, "final_ids": len(IDS)}).encode()
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                                 + str(len(out)).encode() + b"\r\n\r\n" + out)
        else:
            body = b"".join(self.body)
            COUNTS["requests"] += 1
            m = _STATE.search(body)
            state = m.group(1) if m else b"other"
            key = state.decode()
            COUNTS[key] = COUNTS.get(key, 0) + 1
            if state in _FINAL:
                i = _ID.search(body)
                if i:
                    IDS.add(int(i.group(1)))
            self.transport.write(OK)
        self.body.clear()
        self.url = b""


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Handler, "127.0.0.1", port, backlog=1024)
    print(f"listening on 127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    try:
        import uvloop

        uvloop.run(main(args.port))
    except ImportError:
        asyncio.run(main(args.port))
