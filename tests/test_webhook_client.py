"""The callback sender's HTTP client against a raw server that answers as told."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from ujumbe.workers.webhook_client import WebhookClient


class RawServer:
    """Reads one request at a time and writes what ``answer(request)`` returns
    (None closes the connection without answering)."""

    def __init__(self, answer: Callable[[bytes], bytes | None]) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self.connections = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
                    0,
                )
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                out = self.answer(request)
                if out is None:
                    break
                writer.write(out)
                await writer.drain()
                if b"connection: close" in out.lower() or b"content-length" not in out.lower() and b"chunked" not in out:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Callable[[bytes], bytes | None]], asyncio.Future]]:
    servers: list[asyncio.Server] = []

    async def start(answer: Callable[[bytes], bytes | None]) -> tuple[RawServer, str]:
        raw = RawServer(answer)
        server = await asyncio.start_server(raw.handle, "127.0.0.1", 0)
        servers.append(server)
        return raw, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start  # type: ignore[misc]
    for s in servers:
        s.close()


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def test_posts_the_body_and_headers_and_keeps_the_connection(serve) -> None:  # type: ignore[no-untyped-def]
    raw, base = await serve(lambda r: OK)
    client = WebhookClient()
    for n in range(3):
        assert await client.post(base + "/hook?x=1", f'{{"n":{n}}}'.encode(), {"webhook-id": "msg_1"}) == (200, b"ok")
    await client.close()
    assert raw.connections == 1
    first = raw.requests[0]
    assert first.startswith(b"POST /hook?x=1 HTTP/1.1\r\n")
    assert b"\r\nwebhook-id: msg_1\r\n" in first and first.endswith(b'{"n":0}')


async def test_chunked_and_close_delimited_answers_are_read_whole(serve) -> None:  # type: ignore[no-untyped-def]
    _, chunked = await serve(lambda r: b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nOK\r\n3\r\n!!!\r\n0\r\n\r\n")
    _, closing = await serve(lambda r: b"HTTP/1.1 500 Oops\r\nConnection: close\r\n\r\nall of it")
    client = WebhookClient()
    assert await client.post(chunked + "/", b"{}", {}) == (202, b"OK!!!")
    assert await client.post(closing + "/", b"{}", {}) == (500, b"all of it")
    await client.close()


async def test_a_connection_the_server_dropped_while_idle_is_replaced(serve) -> None:  # type: ignore[no-untyped-def]
    raw, base = await serve(lambda r: OK)
    client = WebhookClient()
    assert await client.post(base + "/", b"1", {}) == (200, b"ok")
    raw.writers[0].close()  # the server's keep-alive timeout
    await asyncio.sleep(0.05)
    assert await client.post(base + "/", b"2", {}) == (200, b"ok")
    assert raw.connections == 2
    await client.close()


async def test_a_url_cannot_inject_into_the_request_line(serve) -> None:  # type: ignore[no-untyped-def]
    raw, base = await serve(lambda r: OK)
    client = WebhookClient()
    await client.post(base + "/a b/ü?q=x y", b"{}", {})
    await client.close()
    assert raw.requests[0].split(b"\r\n")[0] == b"POST /a%20b/%C3%BC?q=x%20y HTTP/1.1"


async def test_long_answers_are_cut_and_failures_are_errors(serve) -> None:  # type: ignore[no-untyped-def]
    _, big = await serve(lambda r: b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100_000)
    _, silent = await serve(lambda r: None)
    _, hanging = await serve(lambda r: b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    client = WebhookClient(timeout_s=0.5)
    status, body = await client.post(big + "/", b"{}", {})
    assert status == 200 and len(body) == 64 * 1024
    with pytest.raises(OSError):
        await client.post(silent + "/", b"{}", {})
    with pytest.raises(TimeoutError):
        await client.post(hanging + "/", b"{}", {})
    with pytest.raises(OSError):
        await client.post("http://127.0.0.1:1/", b"{}", {})  # refused
    with pytest.raises(OSError):
        await client.post("http://127.0.0.1:99999/", b"{}", {})  # no such port
    await client.close()


async def test_credentials_in_the_url_go_as_basic_auth_not_on_the_request_line(serve) -> None:  # type: ignore[no-untyped-def]
    raw, base = await serve(lambda r: OK)
    client = WebhookClient()
    await client.post(base.replace("http://", "http://shop:s%40cret@") + "/dlr", b"{}", {})
    await client.close()
    head = raw.requests[0].split(b"\r\n")
    assert head[0] == b"POST /dlr HTTP/1.1"
    assert b"Authorization: Basic c2hvcDpzQGNyZXQ=" in head  # base64 of "shop:s@cret"
    assert not any(b"shop" in line for line in head if not line.startswith(b"Authorization"))
