"""GET /v1/messages/{id}/exchanges: what passed between us and the carrier,
and between us and the client's callback URL, for one message.

Assembled from what is already stored (the message's events, its parts, its
callback rows), not kept twice: the submit (connector, operator ids, how long
after the accept), each receipt (its stat/err as the carrier sent it, how long
after the submit), and each callback (where to, with any password and secret
query values masked, status, attempts, error) with each of its attempts as
the callback worker kept it (``attempt_log``: when, HTTP status or error,
latency, the start of the answer). The account sees only its own
messages; message text and payloads are not repeated here.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ujumbe.core.errors import NotFound
from ujumbe.dialects.native import account_of, iso, route
from ujumbe.http.common import JSON, path_id, services
from ujumbe.services.callbacks import redacted

# the URL as shown: no password, no secret-looking query value (shared with the stored attempts)
masked = redacted


def _ms(later: int | None, earlier: int | None) -> int | None:
    return later - earlier if later is not None and earlier is not None else None


def assemble(found: dict[str, Any]) -> dict[str, Any]:
    msg = found["msg"]
    carrier: list[dict[str, Any]] = []
    for e in found["events"]:
        detail = e["detail"] or ""
        if e["state"] == "submitted" and ":" in detail and not detail.startswith("receipt"):
            connector, _, ids = detail.partition(":")
            carrier.append({"kind": "submit", "at": iso(e["at"]), "connector": connector.strip(),
                            "operator_ids": [i for i in ids.strip().split(",") if i],
                            "status": "accepted", "latency_ms": _ms(e["at"], msg["created_at"])})
        elif detail.startswith("receipt "):
            op_id, _, raw = detail.removeprefix("receipt ").partition(": ")
            carrier.append({"kind": "receipt", "at": iso(e["at"]), "operator_id": op_id, "state": e["state"],
                            "report": raw, "after_submit_ms": _ms(e["at"], msg["submitted_at"])})
        elif e["state"] in ("retry", "failed", "rejected") and detail:
            carrier.append({"kind": "submit", "at": iso(e["at"]), "connector": msg["connector"],
                            "status": e["state"], "error": detail})
    return {
        "message_id": str(msg["id"]),
        "state": msg["state"],
        "carrier": carrier,
        "parts": [{"part": p["part"], "operator_id": p["operator_id"], "connector": p["connector"],
                   "state": p["state"], "updated_at": iso(p["updated_at"])} for p in found["parts"]],
        "callbacks": [{"id": c["id"], "kind": c["kind"], "url": masked(c["url"]), "status": c["status"],
                       "attempts": c["attempts"], "last_http_status": c["last_status"], "last_error": c["last_error"],
                       "created_at": iso(c["created_at"]), "delivered_at": iso(c["delivered_at"]),
                       "latency_ms": _ms(c["delivered_at"], c["created_at"]),
                       "attempt_log": [{"at": iso(a["at"]), "http_status": a["http_status"], "error": a["error"],
                                        "latency_ms": a["latency_ms"], "response": a["response"], "url": a["url"]}
                                       for a in found["attempts"].get(c["id"], [])]}
                      for c in found["callbacks"]],
    }


@route("GET", "/v1/messages/{id:id}/exchanges", tag="messages",
       summary="What passed with the carrier and the callback URL for one message (secrets masked)")
async def exchanges(request: Request) -> Response:
    account = await account_of(request)
    mid = path_id(request, "message")
    found = await services(request).messaging.exchanges(account.id, mid)
    if found is None:
        raise NotFound(f"No message {mid}")  # as GET /v1/messages/{id}
    return JSON(assemble(found))
