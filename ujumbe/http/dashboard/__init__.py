"""The web dashboard, served from the same Starlette app at ``/dashboard``.

Server-rendered pages (Jinja2) with htmx for the live parts and uPlot for the
chart, both vendored in ``static/``: nothing to build, nothing from a CDN.
An adapter like the dialects: it calls the services and holds no SQL.

Security: server-side sessions in an HttpOnly, SameSite=Strict cookie
(Secure over TLS); a CSRF token on every form and htmx request; a
Content-Security-Policy with no inline script; logins throttled by the
Accounts service's limiter, as the API's; every page reads through the logged
in account's id; the operator's pages need the admin token.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ujumbe.core import campaigns as rules
from ujumbe.core import speech as speech_rules
from ujumbe.core.calls import VoiceOptions
from ujumbe.core.errors import Invalid, NotFound, RateLimited, UjumbeError, Unauthorized
from ujumbe.core.pricing import display
from ujumbe.core.states import State
from ujumbe.http.common import client_address, parse_id, services
from ujumbe.services import dashboard as svc
from ujumbe.services.accounts import Account
from ujumbe.services.callbacks import redacted
from ujumbe.services.messaging import SendRequest
from ujumbe.services.routing import BUILTIN_NAMES, ROUTE_KINDS

COOKIE = "ujumbe_session"
LOGIN_COOKIE = "ujumbe_login"  # double-submit token for the login forms, before there is a session
PREFIX = "/dashboard"
PAGE_SIZE = 50

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    # the send page's "listen" plays the speech it fetched as a blob: URL
    "media-src 'self' blob:; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}

env = Environment(loader=PackageLoader("ujumbe.http.dashboard", "templates"), autoescape=select_autoescape(["html"]))


def _time(ms: int | None) -> str:
    if not ms:
        return ""
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _money(units: int | None) -> str:
    return "" if units is None else f"{display(units):g}"


def _duration(ms: int | None) -> str:
    if ms is None:
        return "–"
    return f"{ms} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def _isotime(iso: str | None) -> str:
    """An ISO 8601 instant of the API (a call's times) as the pages show times, to the millisecond."""
    return iso.replace("T", " ").removesuffix("Z") if iso else "–"


env.filters.update(time=_time, isotime=_isotime, money=_money, duration=_duration, redacted=redacted,
                   codepoint=lambda ch: " ".join(f"U+{ord(c):04X}" for c in ch))
env.globals.update(prefix=PREFIX, final_states=[s.value for s in State if s.final], states=[s.value for s in State], channels=svc.CHANNELS)


class Ctx:
    """What a handler gets: the request, its session and, on account pages, the account."""

    def __init__(self, request: Request, session: svc.WebSession, account: Account | None) -> None:
        self.request = request
        self.session = session
        self.account = account

    @property
    def platform(self) -> Any:
        return services(self.request)

    @property
    def account_id(self) -> str:
        assert self.account is not None
        return self.account.id


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    body = env.get_template(name).render(request=request, **context)
    return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)


async def form_of(request: Request) -> dict[str, str]:
    """The urlencoded form of a POST (every form here is one), read without
    python-multipart; the body is cached on the request, so reading twice is free."""
    body = await request.body()
    if len(body) > 256 * 1024:
        raise Invalid("The form is too large")
    if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
        return {}
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


UPLOAD_LIMIT = 50 * 1024 * 1024  # as POST /v1/campaigns/{id}/contacts


def _multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").startswith("multipart/form-data")


async def multipart_of(request: Request) -> Any:
    """A multipart form (the contact upload), parsed once: Starlette keeps it
    on the request, so the handler reads the same one."""
    try:
        return await request.form(max_part_size=UPLOAD_LIMIT)
    except Exception as exc:  # the parser's own errors: a malformed body
        raise Invalid(f"The upload could not be read: {exc}") from None


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _set_session_cookie(response: Response, request: Request, token: str, ttl_s: int) -> None:
    response.set_cookie(COOKIE, token, max_age=ttl_s, path=PREFIX, httponly=True, samesite="strict",
                        secure=_secure(request))


def _redirect(url: str, request: Request) -> Response:
    if request.headers.get("hx-request"):
        # htmx follows a redirect inside the swap; ask it to load the page instead
        return Response(status_code=204, headers={"hx-redirect": url, **SECURITY_HEADERS})
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)


def _same_origin(request: Request) -> bool:
    """A browser's POST names where it comes from; one from another site is refused
    even before the CSRF token is checked."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


Handler = Callable[[Ctx], Awaitable[Response]]


def status_of(exc: UjumbeError) -> int:
    return {"not_found": 404, "unauthorized": 401, "forbidden": 403, "conflict": 409, "rate_limited": 429,
            "payment": 402, "unavailable": 503}.get(exc.kind, 400)


def page(handler: Handler, *, admin: bool = False) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a handler: require a session (an account's, or the operator's for
    ``admin``), check the CSRF token on anything but GET, and show use-case
    errors on an error page rather than a 500."""

    async def endpoint(request: Request) -> Response:
        p = services(request)
        if admin and not p.settings.admin_token:
            return render(request, "error.html", 404, message="Not found", ctx=None)
        session = await p.web_sessions.get(request.cookies.get(COOKIE, ""))
        login = f"{PREFIX}/admin/login" if admin else f"{PREFIX}/login"
        if session is None or session.admin != admin:
            return _redirect(login, request)
        account = None
        if not admin:
            try:
                account = await p.accounts.get(session.account_id)
            except NotFound:
                account = None
            if account is None or not account.active:
                await p.web_sessions.close(session.token)
                return _redirect(login, request)
        ctx = Ctx(request, session, account)
        if request.method != "GET":
            given = request.headers.get("x-csrf-token")
            if given is None:
                try:
                    given = (await multipart_of(request)).get("csrf", "") if _multipart(request) else \
                        (await form_of(request)).get("csrf", "")
                except Invalid as exc:
                    return render(request, "error.html", 400, message=exc.message, ctx=ctx)
            if not _same_origin(request) or not p.web_sessions.csrf_ok(session, given):
                return render(request, "error.html", 403, message="This form has expired; reload the page and try again.",
                              ctx=ctx)
        try:
            return await handler(ctx)
        except UjumbeError as exc:
            return render(request, "error.html", status_of(exc), message=exc.message, ctx=ctx)

    endpoint.__name__ = handler.__name__
    return endpoint


def view(ctx: Ctx, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return render(ctx.request, name, status, ctx=ctx, account=ctx.account, csrf=ctx.session.csrf, **context)


# --- login ---


def _login_token(request: Request) -> str:
    return request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)


def _login_page(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    token = _login_token(request)
    response = render(request, template, status, ctx=None, csrf=token, **context)
    response.set_cookie(LOGIN_COOKIE, token, max_age=3600, path=PREFIX, httponly=True, samesite="strict",
                        secure=_secure(request))
    return response


async def _login_form(request: Request) -> tuple[dict[str, str], bool]:
    form = await form_of(request)
    token = request.cookies.get(LOGIN_COOKIE, "")
    ok = bool(token) and hmac.compare_digest(token, form.get("csrf", "")) and _same_origin(request)
    return form, ok


async def login(request: Request) -> Response:
    p = services(request)
    if request.method == "GET":
        return _login_page(request, "login.html")
    form, ok = await _login_form(request)
    if not ok:
        return _login_page(request, "login.html", 403, error="This form has expired; try again.")
    who = form.get("login", "").strip()
    try:
        if not who:
            raise Invalid("Give your username or email")
        account = await p.accounts.verify_password(who, form.get("password", ""), client_address(request))
    except (Unauthorized, Invalid, RateLimited) as exc:
        status = 429 if isinstance(exc, RateLimited) else 401
        return _login_page(request, "login.html", status, error=exc.message, login=who)
    session = await p.web_sessions.open(account.id)
    response = RedirectResponse(f"{PREFIX}/today", status_code=303, headers=SECURITY_HEADERS)
    _set_session_cookie(response, request, session.token, p.web_sessions.ttl_s)
    response.delete_cookie(LOGIN_COOKIE, path=PREFIX)
    return response


async def logout(ctx: Ctx) -> Response:
    await ctx.platform.web_sessions.close(ctx.session.token)
    response = RedirectResponse(f"{PREFIX}/admin/login" if ctx.session.admin else f"{PREFIX}/login",
                                status_code=303, headers=SECURITY_HEADERS)
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


async def admin_login(request: Request) -> Response:
    p = services(request)
    token = p.settings.admin_token
    if not token:
        return render(request, "error.html", 404, message="Not found", ctx=None)
    if request.method == "GET":
        return _login_page(request, "admin_login.html")
    form, ok = await _login_form(request)
    if not ok:
        return _login_page(request, "admin_login.html", 403, error="This form has expired; try again.")
    # The same rule and throttle as the admin API (http/admin.py): the right
    # token always gets in; wrong ones are counted per address in the store
    # and, after five, answered 429 after a pause.
    if not hmac.compare_digest(form.get("token", "").encode(), token.encode()):
        try:
            await p.accounts.refuse_credential(f"admin:{client_address(request)}", p.accounts.admin_attempts)
        except RateLimited as exc:
            return _login_page(request, "admin_login.html", 429, error=exc.message)
        return _login_page(request, "admin_login.html", 401, error="That is not the admin token.")
    session = await p.web_sessions.open(None, admin=True)
    response = RedirectResponse(f"{PREFIX}/admin", status_code=303, headers=SECURITY_HEADERS)
    _set_session_cookie(response, request, session.token, p.web_sessions.ttl_s)
    response.delete_cookie(LOGIN_COOKIE, path=PREFIX)
    return response


async def home(request: Request) -> Response:
    return RedirectResponse(f"{PREFIX}/today", status_code=303)


# --- today at a glance ---


def _chart_data(g: svc.Glance) -> str:
    return json.dumps({"t": g.buckets, "sent": g.series["sent"], "delivered": g.series["delivered"],
                       "failed": g.series["failed"]})


# The views the page offers: days -> (hours, minutes per chart point).
WINDOWS = {1: (24, 60), 7: (7 * 24, 360)}


async def _glance(ctx: Ctx) -> tuple[int, svc.Glance]:
    days = _int(ctx.request.query_params.get("days"), "days") or 1
    if days not in WINDOWS:
        raise Invalid("'days' is 1 or 7")
    hours, minutes = WINDOWS[days]
    return days, await ctx.platform.dashboard.glance(ctx.account_id, hours=hours, bucket_minutes=minutes)


async def today(ctx: Ctx) -> Response:
    days, g = await _glance(ctx)
    balance = await ctx.platform.credits.balance(ctx.account_id)
    return view(ctx, "today.html", g=g, days=days, chart=_chart_data(g), balance=balance, nav="today")


async def today_figures(ctx: Ctx) -> Response:
    days, g = await _glance(ctx)
    return view(ctx, "_figures.html", g=g, days=days, chart=_chart_data(g))


# --- messages ---


def _int(value: str | None, name: str) -> int | None:
    if value is None or value.strip() == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise Invalid(f"'{name}' must be a whole number") from None


def _when(value: str | None, name: str) -> int | None:
    """A datetime-local field, read as UTC (the pages show UTC)."""
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise Invalid(f"'{name}' is not a date and time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return int(parsed.timestamp() * 1000)


async def messages(ctx: Ctx) -> Response:
    qp = ctx.request.query_params
    p = ctx.platform
    state = svc.check_state(qp.get("state") or None)
    channel = svc.check_channel(qp.get("channel") or None)
    number = (qp.get("to") or "").strip()
    reference = (qp.get("reference") or "").strip()
    recipient = None
    if number:
        from ujumbe.core.numbers import InvalidNumber, normalize

        try:
            recipient = normalize(number, ctx.account.region).e164 if ctx.account else number
        except InvalidNumber as exc:
            raise Invalid(f"'{number}' is not a phone number: {exc.reason}") from None
    request_id = (qp.get("request_id") or "").strip() or None
    rows: list[dict[str, Any]] = []
    searched = True
    if reference:
        found = await p.messaging.request_by_reference(ctx.account_id, reference)
        if found is None:
            searched = False
        else:
            request_id = found.request_id
    since, until = _when(qp.get("since"), "from"), _when(qp.get("until"), "until")
    # Searched by time alone, the pages go in (created_at, id) order: the
    # cursor is "created_at.id" (services/dashboard.py says why).
    by_time = (since is not None or until is not None) and recipient is None and request_id is None
    cursor = (qp.get("cursor") or "").strip()
    before, before_time = None, None
    if by_time and cursor:
        at, _, mid = cursor.partition(".")
        if not (at.isdigit() and mid.isdigit()):
            raise Invalid("'cursor' is not one this page gave")
        before_time = (int(at), int(mid))
    else:
        before = _int(cursor, "cursor")
    if searched:
        rows = await p.dashboard.search(
            ctx.account_id, limit=PAGE_SIZE, before=before, state=state, recipient=recipient,
            request_id=request_id, since=since, until=until, before_time=before_time, channel=channel,
        )
    next_url = None
    if len(rows) == PAGE_SIZE:
        kept = {k: v for k, v in qp.items() if k != "cursor" and v}
        last = rows[-1]
        next_cursor = f"{last['created_at']}.{last['id']}" if by_time else str(last["id"])
        next_url = f"{PREFIX}/messages?" + urlencode({**kept, "cursor": next_cursor})
    return view(ctx, "messages.html", rows=rows, q=dict(qp), next_url=next_url, nav="messages")


async def _message(ctx: Ctx) -> dict[str, Any]:
    raw = ctx.request.path_params["id"]
    if not raw.isdigit():
        raise NotFound(f"No message {raw}")
    # Read through the session's account: another account's id is simply not found.
    return await ctx.platform.messaging.message(ctx.account_id, int(raw))


async def message(ctx: Ctx) -> Response:
    msg = await _message(ctx)
    detail = await ctx.platform.dashboard.message_detail(ctx.account_id, msg["id"], msg["request_id"])
    return view(ctx, "message.html", m=msg, final=State(msg["state"]).final, nav="messages", **detail)


async def message_live(ctx: Ctx) -> Response:
    msg = await _message(ctx)
    if ctx.request.query_params.get("badge"):
        return view(ctx, "_badge.html", m=msg, final=State(msg["state"]).final)
    detail = await ctx.platform.dashboard.message_detail(ctx.account_id, msg["id"], msg["request_id"])
    return view(ctx, "_message_live.html", m=msg, final=State(msg["state"]).final, **detail)


async def inbound(ctx: Ctx) -> Response:
    before = _int(ctx.request.query_params.get("cursor"), "cursor")
    rows = await ctx.platform.messaging.inbound(ctx.account_id, limit=PAGE_SIZE, before=before)
    next_url = f"{PREFIX}/inbound?cursor={rows[-1]['id']}" if len(rows) == PAGE_SIZE else None
    return view(ctx, "inbound.html", rows=rows, next_url=next_url, nav="inbound")


# --- send ---


def _recipients(raw: str) -> list[str]:
    return [r.strip() for r in raw.replace("\n", ",").replace(";", ",").split(",") if r.strip()]


async def _preview(ctx: Ctx, text: str, to: str) -> svc.Preview:
    from ujumbe.core.numbers import InvalidNumber, normalize

    assert ctx.account is not None
    prices = await ctx.platform.messaging.prices()
    pv = svc.preview(text, max_chars=ctx.account.max_chars)
    total = 0
    for raw in _recipients(to) or [""]:
        network = None
        if raw:
            try:
                network = normalize(raw, ctx.account.region).network
            except InvalidNumber:
                continue
        total += prices.cost(network, pv.parts)
    return svc.Preview(**{**pv.__dict__, "cost": total})


async def _approved_senders(ctx: Ctx) -> list[Any]:
    return [s for s in await ctx.platform.senders.list(ctx.account_id) if getattr(s, "status", "approved") == "approved"]


def _voices(ctx: Ctx) -> list[tuple[str, str]]:
    """The voices a call can speak in (the speech service's), with their description."""
    return list(speech_rules.VOICES.items())


def _send_view(ctx: Ctx, status: int = 200, **context: Any) -> HTMLResponse:
    return view(ctx, "send.html", status, voices=_voices(ctx), default_voice=speech_rules.DEFAULT_VOICE,
                voice_ok="voice" in ctx.platform.messaging.channels, nav="send", **context)


async def send_page(ctx: Ctx) -> Response:
    senders = await _approved_senders(ctx)
    pv = await _preview(ctx, "", "")
    return _send_view(ctx, pv=pv, senders=senders, form={})


def _length_factor(raw: str | None) -> float:
    """The form's length factor (empty: 1.0), by the speech rules' one check."""
    try:
        return speech_rules.length_factor_of((raw or "").strip() or 1.0)
    except speech_rules.SpeechError as exc:
        raise Invalid(str(exc), code=exc.code) from None


async def send_listen(ctx: Ctx) -> Response:
    """The send form's text said in its voice, as a call would play it (what
    POST /v1/voice/test answers): 8 kHz mono WAV for the page's <audio>."""
    form = await form_of(ctx.request)
    text = form.get("text", "")
    if not text.strip():
        raise Invalid("Write the text to listen to")
    pcm = await ctx.platform.speech.render(text, voice=form.get("voice") or speech_rules.DEFAULT_VOICE,
                                           length_factor=_length_factor(form.get("length_factor")))
    return Response(speech_rules.wav(pcm), media_type="audio/wav", headers=SECURITY_HEADERS)


async def send_preview(ctx: Ctx) -> Response:
    form = await form_of(ctx.request)
    text, to = str(form.get("text", "")), str(form.get("to", ""))
    return view(ctx, "_preview.html", pv=await _preview(ctx, text, to), text=text)


async def send(ctx: Ctx) -> Response:
    form = await form_of(ctx.request)
    assert ctx.account is not None
    recipients = _recipients(form.get("to", ""))
    text = form.get("text", "")
    senders = await _approved_senders(ctx)
    error = None
    if not recipients:
        error = "Give at least one recipient."
    elif not text.strip():
        error = "Write the message."
    if error is None:
        try:
            call = form.get("channel") == "voice"
            result = await ctx.platform.messaging.send(ctx.account, SendRequest(
                recipients=recipients, text=text, reference=form.get("reference", "").strip() or None,
                # a call's caller id is a number, not a sender name: the trunk's own here
                sender=None if call else form.get("sender") or None, channel="voice" if call else "sms",
                voice=VoiceOptions(voice=form.get("voice") or speech_rules.DEFAULT_VOICE,
                                   length_factor=_length_factor(form.get("length_factor"))) if call else None,
            ))
        except UjumbeError as exc:
            error = exc.message
        else:
            return view(ctx, "sent.html", result=result, nav="send")
    pv = await _preview(ctx, text, form.get("to", ""))
    return _send_view(ctx, 400, pv=pv, senders=senders, form=form, error=error)


# --- account ---


async def account_page(ctx: Ctx, *, new_key: str | None = None, notice: str | None = None) -> Response:
    p, aid = ctx.platform, ctx.account_id
    qp = ctx.request.query_params
    ledger = await p.credits.transactions(aid, 20, _int(qp.get("ledger_cursor"), "ledger_cursor"))
    failed = await p.callback_log.list(aid, "failed", 20, _int(qp.get("cb_cursor"), "cb_cursor"))
    return view(
        ctx, "account.html", nav="account", new_key=new_key, notice=notice,
        balance=await p.credits.balance(aid), ledger=ledger,
        ledger_next=ledger[-1]["id"] if len(ledger) == 20 else None,
        keys=await p.dashboard.api_keys(aid), failed=failed,
        failed_next=failed[-1]["id"] if len(failed) == 20 else None,
        senders=await p.senders.list(aid), templates=await p.templates.list(aid),
    )


async def account(ctx: Ctx) -> Response:
    return await account_page(ctx)


async def create_key(ctx: Ctx) -> Response:
    form = await form_of(ctx.request)
    label = str(form.get("label", "")).strip()[:64]
    key = await ctx.platform.accounts.new_api_key(ctx.account_id, label)
    return await account_page(ctx, new_key=key)  # shown this once, never again


async def revoke_key(ctx: Ctx) -> Response:
    form = await form_of(ctx.request)
    await ctx.platform.dashboard.revoke_api_key(ctx.account_id, str(form.get("key", "")))
    ctx.platform.accounts.forget_cached_keys()  # revoked at once in this process, not after the cache's TTL
    return await account_page(ctx, notice="The key is revoked.")


async def set_callbacks(ctx: Ctx) -> Response:
    form = await form_of(ctx.request)
    urls: dict[str, str | None] = {}
    for name in ("dlr_url", "inbound_url", "subscription_url"):
        value = str(form.get(name, "")).strip()
        if value:
            await ctx.platform.check_callback_url(value)
        urls[name] = value or None
    ctx.account = await ctx.platform.accounts.set_callbacks(ctx.account_id, urls)
    return await account_page(ctx, notice="Callback URLs saved.")


async def request_sender(ctx: Ctx) -> Response:
    form = await form_of(ctx.request)
    networks = [n.strip() for n in form.get("networks", "").split(",") if n.strip()] or None
    sender = await ctx.platform.senders.request(ctx.account_id, form.get("name", "").strip(), networks)
    return await account_page(ctx, notice=f"Sender name {sender.name}: {sender.status}.")


async def put_template(ctx: Ctx) -> Response:
    form = await form_of(ctx.request)
    key, body = form.get("key", "").strip(), form.get("body", "")
    if not key or not body.strip():
        raise Invalid("A template needs a key and a body")
    await ctx.platform.templates.put(ctx.account_id, key, "sms", body)
    return await account_page(ctx, notice=f"Template {key} saved.")


async def webhook_secret(ctx: Ctx) -> Response:
    assert ctx.account is not None
    secret = ctx.platform.accounts.webhook_secret(ctx.account.key_seed)
    return view(ctx, "_secret.html", secret=secret)


async def retry_callback(ctx: Ctx) -> Response:
    raw = ctx.request.path_params["id"]
    if not raw.isdigit():
        raise NotFound(f"No callback {raw}")
    await ctx.platform.callback_log.retry(ctx.account_id, int(raw))
    if ctx.request.headers.get("hx-request"):
        return view(ctx, "_retried.html", id=int(raw))
    return await account_page(ctx, notice=f"Callback {raw} will be sent again.")


# --- campaigns ---


def _path_int(ctx: Ctx, name: str, thing: str) -> int:
    raw = ctx.request.path_params[name]
    value = parse_id(raw)  # ASCII digits within a stored id's range, as the API takes them
    if value is None:
        raise NotFound(f"No {thing} {raw[:40]}")
    return value


def _query_job(ctx: Ctx, name: str) -> int | None:
    return parse_id(ctx.request.query_params.get(name) or "")


async def campaigns_page(ctx: Ctx, *, error: str | None = None, form: dict[str, str] | None = None,
                         status: int = 200) -> Response:
    assert ctx.account is not None
    offset = _int(ctx.request.query_params.get("offset"), "offset") or 0
    if offset < 0:
        raise Invalid("'offset' cannot be negative")
    total, rows = await ctx.platform.campaigns.list(ctx.account, offset=offset, limit=PAGE_SIZE)
    next_url = f"{PREFIX}/campaigns?offset={offset + PAGE_SIZE}" if offset + PAGE_SIZE < total else None
    return view(ctx, "campaigns.html", status, rows=rows, total=total, next_url=next_url, error=error,
                form=form or {}, senders=await _approved_senders(ctx), nav="campaigns")


async def campaigns(ctx: Ctx) -> Response:
    return await campaigns_page(ctx)


async def campaign_create(ctx: Ctx) -> Response:
    assert ctx.account is not None
    form = await form_of(ctx.request)
    try:
        camp, _ = await ctx.platform.campaigns.create(
            ctx.account, name=form.get("name", ""), services="SMS", description=form.get("description", ""),
            message=form.get("message") or None, sender=form.get("sender") or None,
            rate=_int(form.get("rate"), "rate"),
        )
    except UjumbeError as exc:
        return await campaigns_page(ctx, error=exc.message, form=form, status=400)
    return _redirect(f"{PREFIX}/campaigns/{camp['id']}", ctx.request)


async def _campaign_state(ctx: Ctx, cid: int) -> dict[str, Any]:
    """What the page and its live part show: the campaign, its figures, and
    the import and report jobs named in the address (only this campaign's)."""
    assert ctx.account is not None
    p = ctx.platform
    camp = await p.campaigns.get(ctx.account, cid)  # another account's campaign: not found
    summary = await p.campaigns.summary(ctx.account, cid)
    jobs: dict[str, Any] = {}
    for name in ("import", "report"):
        jid = _query_job(ctx, name)
        if jid is not None:
            try:
                job = await p.jobs.get(ctx.account, jid)
            except NotFound:
                continue
            if job["campaign_id"] == cid and job["kind"] == name:
                jobs[name] = job
    if "report" not in jobs:
        current = await p.jobs.current_report(ctx.account, cid)
        if current is not None:
            jobs["report"] = current
    by = summary["by_status"]
    settled = sum(by.get(s, 0) for s in rules.FINAL_NUMBER)
    in_run = settled + by.get(rules.SCHEDULED, 0) + by.get(rules.RUNNING, 0)
    live = camp["status"] in rules.ACTIVE or any(j["status"] in ("queued", "running") for j in jobs.values())
    numbers = await p.campaigns.numbers(ctx.account, cid, limit=PAGE_SIZE)
    return {"c": camp, "summary": summary, "jobs": jobs, "numbers": numbers, "settled": settled, "in_run": in_run, "live": live,
            "query": urlencode({k: j["id"] for k, j in jobs.items()})}


async def campaign(ctx: Ctx, notice: str | None = None) -> Response:
    assert ctx.account is not None
    cid = _path_int(ctx, "id", "campaign")
    state = await _campaign_state(ctx, cid)
    preview: list[dict[str, Any]] = []
    if "import" in state["jobs"]:
        preview = await ctx.platform.jobs.preview(ctx.account, state["jobs"]["import"]["id"])
    return view(ctx, "campaign.html", preview=preview, rerunnable=rules.RERUNNABLE,
                notice=notice, nav="campaigns", **state)


async def campaign_live(ctx: Ctx) -> Response:
    return view(ctx, "_campaign_live.html", **await _campaign_state(ctx, _path_int(ctx, "id", "campaign")))


async def campaign_upload(ctx: Ctx) -> Response:
    from ujumbe.dialects.native_campaigns import uploaded

    assert ctx.account is not None
    cid = _path_int(ctx, "id", "campaign")
    await ctx.platform.campaigns.get(ctx.account, cid)  # 404 before reading the file
    name, data = await uploaded(ctx.request, ("file",))
    job = await ctx.platform.jobs.start_import(ctx.account, cid, name, data)
    return _redirect(f"{PREFIX}/campaigns/{cid}?import={job['id']}", ctx.request)


async def campaign_action(ctx: Ctx) -> Response:
    assert ctx.account is not None
    cid = _path_int(ctx, "id", "campaign")
    action = ctx.request.path_params["action"]
    p = ctx.platform
    form = await form_of(ctx.request)
    if action == "begin":
        statuses = [s for s in rules.RERUNNABLE if form.get(f"status-{s}")]
        run = await p.campaigns.begin(ctx.account, cid, message=form.get("message") or None,
                                      schedule=form.get("schedule_at") or None, statuses=statuses or None)
        notice = f"{run['numbers']} numbers {run['status']}: {run['hold_note']}."
    elif action in ("pause", "resume", "stop"):
        camp = await getattr(p.campaigns, action)(ctx.account, cid)
        notice = f"The campaign is {camp['status']}."
    elif action == "report":
        job = await p.jobs.current_report(ctx.account, cid) or await p.jobs.start_report(ctx.account, cid)
        return _redirect(f"{PREFIX}/campaigns/{cid}?report={job['id']}", ctx.request)
    else:
        raise NotFound(f"No action {action}")
    # shown on the page itself (the forms keep the jobs' ids in their address)
    return await campaign(ctx, notice=notice)


async def job_file(ctx: Ctx) -> Response:
    assert ctx.account is not None
    ctype, data, name = await ctx.platform.jobs.file(ctx.account, _path_int(ctx, "id", "job"),
                                                     ctx.request.path_params["format"])
    return Response(data, media_type=ctype,
                    headers={**SECURITY_HEADERS, "content-disposition": f'attachment; filename="{name}"'})


# --- the operator ---


def _calls(channel: Any) -> dict[str, int] | None:
    """A voice connector's calls in progress and its limit (None: not a voice one, or not running here)."""
    if channel is None or getattr(channel, "kind", None) != "voice":
        return None
    return {"active": int(channel.active_calls), "max": int(channel.max_in_flight)}


async def _board(ctx: Ctx) -> list[dict[str, Any]]:
    p = ctx.platform
    out = []
    for c in await p.routing.list_connectors():
        status = p.router.status(c["name"])
        out.append({**c, "status": status, "meter": p.router.meter(c["name"]).snapshot(),
                    "calls": _calls(p.router.connectors.get(c["name"]))})
    # Once an operator connector is configured the built-in simulator carries nothing (services/routing.py).
    builtin = [{"name": ch.name, "kind": ch.kind, "builtin": True, "meter": p.router.meter(ch.name).snapshot(),
                "standby": p.router.configured and ch is p.simulator,
                "status": {"running": True, "binds_up": None, "in_flight": p.router.in_flight(ch)},
                "calls": _calls(ch)}
               for ch in p.channels.values()]
    return out + builtin


async def admin_home(ctx: Ctx) -> Response:
    return view(ctx, "admin_connectors.html", connectors=await _board(ctx), nav="connectors")


async def admin_board(ctx: Ctx) -> Response:
    return view(ctx, "_connectors.html", connectors=await _board(ctx))


async def admin_pause(ctx: Ctx) -> Response:
    name, action = ctx.request.path_params["name"], ctx.request.path_params["action"]
    if action not in ("pause", "resume"):
        raise NotFound(f"No action {action}")
    # Paused is disabled: the workers stop the connector (unbinding it) and start it again on resume.
    enabled = action == "resume"
    await ctx.platform.routing.update_connector(name, {"enabled": enabled})
    return _redirect(f"{PREFIX}/admin", ctx.request) if not ctx.request.headers.get("hx-request") else \
        view(ctx, "_connectors.html", connectors=await _board(ctx))


async def admin_routes(ctx: Ctx, *, notice: str | None = None, error: str | None = None, status: int = 200,
                       form: dict[str, str] | None = None) -> Response:
    p = ctx.platform
    prices = await p.messaging.prices()
    # the SMS simulator first among the built-in ones: the usual choice on a new install
    connectors = [c["name"] for c in await p.routing.list_connectors()] + sorted(BUILTIN_NAMES, key=lambda n: (n != "simulator", n))
    return view(ctx, "admin_routes.html", status, routes=await p.routing.list_routes(),
                prices=[(k, v, prices.unit(k[0], k[1])) for k, v in sorted(prices.items())], default_price=prices.default, connectors=connectors,
                route_kinds=ROUTE_KINDS, notice=notice, error=error, form=form or {}, nav="routes")


async def admin_routes_get(ctx: Ctx) -> Response:
    return await admin_routes(ctx)


def _priority(raw: str | None) -> Any:
    """The form's priority: a number, or the text as typed for the service to refuse as the API does."""
    raw = (raw or "").strip()
    if not raw:
        return 100
    return int(raw) if raw.lstrip("-").isdigit() and len(raw) < 12 else raw


async def admin_route_change(ctx: Ctx) -> Response:
    """Add (no id), edit or delete a route, or set or remove a price, through
    the routing and credits services: their errors are shown on the page with
    the status the admin API gives them."""
    p = ctx.platform
    form = await form_of(ctx.request)
    what = ctx.request.path_params.get("action", "add")
    raw = ctx.request.path_params.get("id")
    try:
        route_id = parse_id(raw) if raw is not None else 0
        if route_id is None:
            raise NotFound(f"No route {raw[:40]}", code="route_not_found")  # type: ignore[index]
        fields = {"kind": form.get("kind", ""), "value": form.get("value", ""), "connector": form.get("connector", ""),
                  "priority": _priority(form.get("priority"))}
        if what == "add":
            r = await p.routing.add_route(**fields, account_id=form.get("account_id", "").strip() or None)
            notice = f"Route {r['id']} added."
        elif what == "edit":
            await p.routing.update_route(route_id, fields)
            notice = f"Route {raw} saved."
        elif what == "delete":
            await p.routing.remove_route(route_id)
            notice = f"Route {raw} deleted."
        elif what in ("price", "unprice"):
            network = form.get("network", "").strip() or "*"
            channel = form.get("channel", "").strip() or "sms"
            if what == "price":
                # a voice price keeps the unit chosen; SMS and email prices are per part
                unit = (form.get("unit", "").strip() or None) if channel == "voice" else None
                units = await p.credits.set_price(network, form.get("amount", "").strip(), channel, unit)
                per = {"per_minute": "a started minute", "per_call": "an answered call"}.get(unit or "per_minute")
                notice = f"{network} ({channel}) costs {_money(units)} credits {per if channel == 'voice' else 'a part'}."
            else:
                await p.credits.remove_price(network, channel)
                notice = f"The price for {network} ({channel}) is removed."
            p.messaging.forget_prices()  # this process charges the new price at once
        else:
            raise NotFound(f"No action {what}")
    except UjumbeError as exc:
        return await admin_routes(ctx, error=exc.message, status=status_of(exc), form=form)
    return await admin_routes(ctx, notice=notice)


async def admin_accounts(ctx: Ctx, *, notice: str | None = None, created: dict[str, Any] | None = None) -> Response:
    after = ctx.request.query_params.get("after") or None
    rows = await ctx.platform.dashboard.accounts_page(PAGE_SIZE, after)
    next_url = f"{PREFIX}/admin/accounts?after={rows[-1]['id']}" if len(rows) == PAGE_SIZE else None
    pending = await ctx.platform.senders.all("pending")
    return view(ctx, "admin_accounts.html", rows=rows, next_url=next_url, notice=notice, created=created,
                pending=pending, nav="accounts")


async def admin_sender(ctx: Ctx) -> Response:
    form = await form_of(ctx.request)
    account_id, name = form.get("account_id", ""), form.get("name", "")
    if ctx.request.path_params["action"] == "approve":
        await ctx.platform.senders.approve(account_id, name)
        return await admin_accounts(ctx, notice=f"Sender name {name} approved for {account_id}.")
    if ctx.request.path_params["action"] == "reject":
        await ctx.platform.senders.reject(account_id, name, form.get("reason") or None)
        return await admin_accounts(ctx, notice=f"Sender name {name} rejected for {account_id}.")
    raise NotFound("No such action")


async def admin_accounts_get(ctx: Ctx) -> Response:
    return await admin_accounts(ctx)


async def admin_account_create(ctx: Ctx) -> Response:
    form = await form_of(ctx.request)
    created = await ctx.platform.accounts.create(
        name=form.get("name", ""), email=form.get("email", ""), password=form.get("password", ""),
        username=form.get("username") or None, credits=form.get("credits") or None,
    )
    return await admin_accounts(ctx, created=created)


async def admin_account_action(ctx: Ctx) -> Response:
    account_id = ctx.request.path_params["id"]
    action = ctx.request.path_params["action"]
    p = ctx.platform
    await p.accounts.get(account_id)  # 404 for an unknown id
    if action == "topup":
        form = await form_of(ctx.request)
        await p.credits.add(account_id, str(form.get("amount", "")), note="top-up (dashboard)")
        notice = f"Topped up {account_id}."
    elif action in ("suspend", "resume"):
        await p.dashboard.set_active(account_id, action == "resume")
        p.accounts.forget_cached_keys()
        notice = f"{account_id} {'suspended' if action == 'suspend' else 'resumed'}."
    else:
        raise NotFound(f"No action {action}")
    return await admin_accounts(ctx, notice=notice)


def routes() -> list[BaseRoute]:
    static = Path(__file__).parent / "static"
    admin = {"admin": True}

    def a(handler: Handler) -> Any:
        return page(handler, **admin)

    return [
        Mount(f"{PREFIX}/static", StaticFiles(directory=static), name="dashboard-static"),
        Route(PREFIX, home),
        Route(f"{PREFIX}/", home),
        Route(f"{PREFIX}/login", login, methods=["GET", "POST"]),
        Route(f"{PREFIX}/logout", page(logout), methods=["POST"]),
        Route(f"{PREFIX}/today", page(today)),
        Route(f"{PREFIX}/today/figures", page(today_figures)),
        Route(f"{PREFIX}/messages", page(messages)),
        Route(f"{PREFIX}/messages/{{id}}", page(message)),
        Route(f"{PREFIX}/messages/{{id}}/live", page(message_live)),
        Route(f"{PREFIX}/inbound", page(inbound)),
        Route(f"{PREFIX}/send", page(send_page)),
        Route(f"{PREFIX}/send", page(send), methods=["POST"]),
        Route(f"{PREFIX}/send/preview", page(send_preview), methods=["POST"]),
        Route(f"{PREFIX}/send/listen", page(send_listen), methods=["POST"]),
        Route(f"{PREFIX}/account", page(account)),
        Route(f"{PREFIX}/account/keys", page(create_key), methods=["POST"]),
        Route(f"{PREFIX}/account/keys/revoke", page(revoke_key), methods=["POST"]),
        Route(f"{PREFIX}/account/callbacks", page(set_callbacks), methods=["POST"]),
        Route(f"{PREFIX}/account/webhook-secret", page(webhook_secret), methods=["POST"]),
        Route(f"{PREFIX}/account/senders", page(request_sender), methods=["POST"]),
        Route(f"{PREFIX}/account/templates", page(put_template), methods=["POST"]),
        Route(f"{PREFIX}/callbacks/{{id}}/retry", page(retry_callback), methods=["POST"]),
        Route(f"{PREFIX}/campaigns", page(campaigns)),
        Route(f"{PREFIX}/campaigns", page(campaign_create), methods=["POST"]),
        Route(f"{PREFIX}/campaigns/{{id}}", page(campaign)),
        Route(f"{PREFIX}/campaigns/{{id}}/live", page(campaign_live)),
        Route(f"{PREFIX}/campaigns/{{id}}/contacts", page(campaign_upload), methods=["POST"]),
        Route(f"{PREFIX}/campaigns/{{id}}/{{action}}", page(campaign_action), methods=["POST"]),
        Route(f"{PREFIX}/jobs/{{id}}/files/{{format}}", page(job_file)),
        Route(f"{PREFIX}/admin/login", admin_login, methods=["GET", "POST"]),
        Route(f"{PREFIX}/admin/logout", a(logout), methods=["POST"]),
        Route(f"{PREFIX}/admin", a(admin_home)),
        Route(f"{PREFIX}/admin/connectors", a(admin_board)),
        Route(f"{PREFIX}/admin/connectors/{{name}}/{{action:str}}", a(admin_pause), methods=["POST"]),
        Route(f"{PREFIX}/admin/routes", a(admin_routes_get)),
        Route(f"{PREFIX}/admin/routes", a(admin_route_change), methods=["POST"]),
        Route(f"{PREFIX}/admin/routes/{{id}}/{{action}}", a(admin_route_change), methods=["POST"]),
        Route(f"{PREFIX}/admin/prices/{{action}}", a(admin_route_change), methods=["POST"]),
        Route(f"{PREFIX}/admin/accounts", a(admin_accounts_get)),
        Route(f"{PREFIX}/admin/accounts", a(admin_account_create), methods=["POST"]),
        Route(f"{PREFIX}/admin/accounts/{{id}}/{{action}}", a(admin_account_action), methods=["POST"]),
        Route(f"{PREFIX}/admin/senders/{{action}}", a(admin_sender), methods=["POST"]),
    ]
