"""A small route table that also writes the OpenAPI document.

Handlers declare their body and response types (msgspec Structs); the same
types validate requests and describe the API, so the docs cannot drift.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

Handler = Callable[[Request], Awaitable[Response]]


@dataclass
class Operation:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    body: Any = None
    response: Any = None
    status: int = 200
    query: dict[str, str] = field(default_factory=dict)
    auth: bool = True
    also: dict[int, str] = field(default_factory=dict)  # other success statuses (same body), and when
    upload: dict[str, Any] | None = None  # a body that is not JSON: media type -> OpenAPI schema
    produces: str | None = None  # the answer's media type when it is a file, not JSON


class Api:
    def __init__(
        self, title: str, version: str,
        auth: str = "An API key (uj_…) or an access token from /v1/auth/token",
    ) -> None:
        self.title = title
        self.version = version
        self.auth = auth  # what the bearer token is, for the document
        self.operations: list[Operation] = []

    def route(
        self, method: str, path: str, *, summary: str, tag: str, body: Any = None, response: Any = None,
        status: int = 200, query: dict[str, str] | None = None, auth: bool = True, also: dict[int, str] | None = None,
        upload: dict[str, Any] | None = None, produces: str | None = None,
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.operations.append(
                Operation(method, path, handler, summary, tag, body, response, status, query or {}, auth, also or {},
                          upload, produces)
            )
            return handler

        return register

    def routes(self) -> list[Route]:
        by_path: dict[str, dict[str, Handler]] = {}
        for op in self.operations:
            by_path.setdefault(op.path, {})[op.method] = op.handler
        out = []
        for path, handlers in by_path.items():
            out.append(Route(path, _dispatch(handlers), methods=list(handlers)))
        return out

    def document(self) -> dict[str, Any]:
        types = [t for op in self.operations for t in (op.body, op.response) if t is not None]
        schemas, components = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
        ref = dict(zip(map(id, types), schemas))
        paths: dict[str, Any] = {}
        for op in self.operations:
            item: dict[str, Any] = {"summary": op.summary, "tags": [op.tag], "operationId": op.handler.__name__}
            params = [
                {"name": name, "in": "path", "required": True, "schema": _PATH_SCHEMAS.get(kind, {"type": "string"})}
                for name, kind in _path_params(op.path)
            ]
            params += [
                {"name": name, "in": "query", "required": False, "schema": {"type": "string"}, "description": desc}
                for name, desc in op.query.items()
            ]
            if params:
                item["parameters"] = params
            if op.body is not None:
                item["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref[id(op.body)]}}}
            if op.upload is not None:
                content = item.setdefault("requestBody", {"required": True, "content": {}})["content"]
                content.update({media: {"schema": schema} for media, schema in op.upload.items()})
            ok: dict[str, Any] = {"description": "OK"}
            if op.response is not None:
                ok["content"] = {"application/json": {"schema": ref[id(op.response)]}}
            if op.produces is not None:
                ok["content"] = {op.produces: {"schema": {"type": "string", "format": "binary"}}}
            item["responses"] = {
                str(op.status): ok,
                **{str(code): {**ok, "description": why} for code, why in op.also.items()},
                "4XX": {"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            }
            if op.auth:
                item["security"] = [{"bearer": []}]
            paths.setdefault(_openapi_path(op.path), {})[op.method.lower()] = item
        components["Error"] = {
            "type": "object",
            "properties": {
                "error": {
                    "type": "object",
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                    "required": ["code", "message"],
                }
            },
        }
        return {
            "openapi": "3.1.0",
            "info": {"title": self.title, "version": self.version},
            "paths": paths,
            "components": {
                "schemas": components,
                "securitySchemes": {
                    "bearer": {
                        "type": "http",
                        "scheme": "bearer",
                        "description": self.auth,
                    }
                },
            },
        }


def _dispatch(handlers: dict[str, Handler]) -> Handler:
    if len(handlers) == 1:
        return next(iter(handlers.values()))

    async def endpoint(request: Request) -> Response:
        # Starlette lets HEAD into any route that takes GET: it is answered as GET is
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    return endpoint


# ``{id:id}`` (see ujumbe.http.common.IdConvertor): an id as the store keeps it.
_PATH_SCHEMAS = {"id": {"type": "integer", "format": "int64", "minimum": 1, "maximum": 2**63 - 1}}


def _path_params(path: str) -> list[tuple[str, str]]:
    """(name, convertor) of each ``{name:convertor}`` in ``path``."""
    return [
        (name, kind) for name, _, kind in (seg[1:-1].partition(":") for seg in path.split("/") if seg.startswith("{"))
    ]


def _openapi_path(path: str) -> str:
    return "/".join(
        "{" + seg[1:-1].split(":")[0] + "}" if seg.startswith("{") else seg for seg in path.split("/")
    )


DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Ujumbe API</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#222}
h1{margin-bottom:0} .op{border:1px solid #ddd;border-radius:6px;margin:.6rem 0;padding:.5rem .8rem}
.m{display:inline-block;min-width:4.5rem;font-weight:700} .GET{color:#07a}.POST{color:#080}
.PUT{color:#a60}.DELETE{color:#c00} code,pre{background:#f6f6f6;border-radius:4px;padding:0 .3rem}
pre{padding:.5rem;overflow:auto;font-size:13px} summary{cursor:pointer}
</style></head><body>
<h1>Ujumbe API</h1><p>The native API. The machine-readable document is at <a href="/openapi.json">/openapi.json</a>.</p>
<div id="ops">Loading…</div>
<script>
fetch('/openapi.json').then(r=>r.json()).then(doc=>{
  const out=[];
  for(const [path,item] of Object.entries(doc.paths)){
    for(const [method,op] of Object.entries(item)){
      const body=op.requestBody?JSON.stringify(op.requestBody.content['application/json'].schema,null,1):'';
      out.push(`<details class="op"><summary><span class="m ${method.toUpperCase()}">${method.toUpperCase()}</span><code>${path}</code> — ${op.summary}</summary>`+
        (body?`<p>Body:</p><pre>${body}</pre>`:'')+`</details>`);
    }
  }
  out.push('<h2>Schemas</h2><pre>'+JSON.stringify(doc.components.schemas,null,1)+'</pre>');
  document.getElementById('ops').innerHTML=out.join('');
});
</script></body></html>"""


async def docs_page(_: Request) -> Response:
    return HTMLResponse(DOCS_PAGE)
