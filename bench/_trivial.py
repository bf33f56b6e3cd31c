"""The ceiling for accept: the same server stack as ``ujumbe serve`` (Starlette
on uvicorn, same loop/http/log settings) with a handler that reads the body
and answers a small JSON — everything but Ujumbe's own work."""

from __future__ import annotations

import argparse

import msgspec
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_enc = msgspec.json.Encoder()


async def handler(request: Request) -> Response:
    body = await request.body()
    return Response(_enc.encode({"ok": True, "length": len(body)}), 202, media_type="application/json")


app = Starlette(routes=[Route("/", handler, methods=["GET", "POST"]), Route("/v1/messages", handler, methods=["POST"])])

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False, loop="auto", http="auto")
