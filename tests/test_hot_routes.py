"""The send endpoints are matched first, and a route is moved first only
where no route before it could take its requests."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.conftest import make_settings
from ujumbe.http.app import HOT_PATHS, create_app, hot_first
from ujumbe.runtime import Platform


async def _ok(_: Request) -> Response:
    return Response("")


def test_every_send_path_is_among_the_first_routes(tmp_path: Path) -> None:
    app = create_app(Platform(make_settings(tmp_path, None)), role="api")
    first = [r.path for r in app.router.routes[:6]]  # type: ignore[attr-defined]
    assert first == list(HOT_PATHS)
    assert set(first) == {"/v1/messages", "/api/v2/engagement", "/sms/v3/sendsms",
                          "/messangi_mmc/rest/api/{rest:path}", "/api/system/send/otp/", "/api/system/send/otp"}


def test_a_route_another_could_take_the_requests_of_stays_where_it_was() -> None:
    catch_all = Route("/{anything:path}", _ok)
    messangi = Route("/messangi/{rest:path}", _ok)
    other = Route("/other/{id}", _ok)
    static = Route("/send", _ok)
    # a catch-all before it: moved first, it would take requests the catch-all took
    assert hot_first([catch_all, messangi, static], ("/messangi/{rest:path}", "/send"))[:2] == [catch_all, messangi]
    # routes with other fixed beginnings cannot match its requests
    assert hot_first([other, static, messangi], ("/messangi/{rest:path}",)) == [messangi, other, static]
    # a route with parameters whose fixed beginning starts the hot one's may match: left in place
    under = Route("/messangi/{a}/{b}", _ok)
    assert hot_first([under, messangi], ("/messangi/{rest:path}",)) == [under, messangi]
    # a path without parameters: moved unless an earlier route matches that very path
    assert hot_first([other, static], ("/send",)) == [static, other]
    assert hot_first([catch_all, static], ("/send",)) == [catch_all, static]
