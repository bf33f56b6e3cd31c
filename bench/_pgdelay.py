"""A delaying TCP proxy: PostgreSQL a network hop away, on one machine.

    python bench/_pgdelay.py --upstream 127.0.0.1:5432 --rtt-ms 1 [--stats FILE]

Listens on a free loopback port (printed as ``listening on 127.0.0.1:PORT``)
and forwards every connection to ``--upstream``, holding each direction's
bytes for half the round trip before passing them on, in the order they
came (a FIFO per direction: bytes are never reordered, and a burst that
arrives while earlier bytes wait goes out right behind them). This kernel
has no ``netem``; this stands in for it.

Threads, not an event loop: asyncio's and uvloop's timers wait in whole
milliseconds (epoll's timeout), so a 0.5 ms hold became 1-2 ms each way;
``time.sleep`` (clock_nanosleep) holds to within ~0.1 ms. Two threads per
direction of each connection: one reads and stamps, one sleeps to the stamp
and writes.

It counts round trips: a *turn* is the client sending after it last heard
from the server (one request/response exchange; asyncpg sends a whole
statement, Parse/Bind/Execute/Sync, in one write). ``--stats`` is rewritten
every 0.2 s with ``{"connections": .., "turns": .., "bytes_up": ..,
"bytes_down": ..}`` so a benchmark can read the counts before and after a run.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import socket
import threading
import time
from pathlib import Path

STATS = {"connections": 0, "turns": 0, "bytes_up": 0, "bytes_down": 0}
_lock = threading.Lock()


class Conn:
    def __init__(self, client: socket.socket, upstream: tuple[str, int], delay: float) -> None:
        self.client = client
        self.server = socket.create_connection(upstream)
        for s in (client, self.server):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.delay = delay
        self.heard = True  # the client's first bytes are a turn
        self.pipe(client, self.server, up=True)
        self.pipe(self.server, client, up=False)

    def pipe(self, src: socket.socket, dst: socket.socket, *, up: bool) -> None:
        q: queue.SimpleQueue[tuple[float, bytes] | None] = queue.SimpleQueue()

        def read() -> None:
            try:
                while data := src.recv(65536):
                    with _lock:
                        if up:
                            STATS["bytes_up"] += len(data)
                            if self.heard:
                                STATS["turns"] += 1
                                self.heard = False
                        else:
                            STATS["bytes_down"] += len(data)
                            self.heard = True
                    q.put((time.monotonic() + self.delay, data))
            except OSError:
                pass
            q.put(None)

        def write() -> None:
            try:
                while (item := q.get()) is not None:
                    due, data = item
                    wait = due - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                    dst.sendall(data)
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        threading.Thread(target=read, daemon=True).start()
        threading.Thread(target=write, daemon=True).start()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--upstream", default="127.0.0.1:5432")
    ap.add_argument("--rtt-ms", type=float, default=1.0, help="round trip added: half each way")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--stats", type=Path)
    args = ap.parse_args()
    host, _, port = args.upstream.rpartition(":")
    delay = args.rtt_ms / 2000
    listener = socket.create_server(("127.0.0.1", args.port), backlog=256)
    print(f"listening on 127.0.0.1:{listener.getsockname()[1]}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    def accept() -> None:
        while True:
            client, _ = listener.accept()
            with _lock:
                STATS["connections"] += 1
            try:
                Conn(client, (host, int(port)), delay)
            except OSError:
                client.close()

    threading.Thread(target=accept, daemon=True).start()
    while not stop.is_set():
        if args.stats:
            tmp = args.stats.with_suffix(".tmp")
            with _lock:
                tmp.write_text(json.dumps(STATS))
            os.replace(tmp, args.stats)
        stop.wait(0.2)


if __name__ == "__main__":
    main()
