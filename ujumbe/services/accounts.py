"""Accounts, credentials and tokens.

Passwords are argon2 hashes; API keys and refresh tokens are random and only
their SHA-256 is stored. Keys that must be *used* by the server (Messangi's
HMAC private key, the webhook signing secret) are derived from the server
secret and a per-account seed, so the database alone reveals none of them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import VerificationError

from ujumbe.core.errors import Conflict, Invalid, NotFound, RateLimited, Unauthorized
from ujumbe.core.pricing import to_units
from ujumbe.services.callbacks import CallbackUrls, masked
from ujumbe.store import Store, now_ms
from ujumbe.store import accounts as q

_hasher = PasswordHasher()
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
API_KEY_PREFIX = "uj_"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    name: str
    email: str
    username: str
    region: str
    instance_id: str
    public_key: str
    key_seed: str
    max_chars: int
    dlr_url: str | None
    inbound_url: str | None
    subscription_url: str | None
    active: bool

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Account:
        return cls(
            id=row["id"], name=row["name"], email=row["email"], username=row["username"],
            region=row["region"], instance_id=row["instance_id"], public_key=row["public_key"],
            key_seed=row["key_seed"], max_chars=row["max_chars"], dlr_url=row["dlr_url"],
            inbound_url=row["inbound_url"], subscription_url=row["subscription_url"],
            active=bool(row["active"]),
        )


class LoginLimiter:
    """At most ``attempts`` failed logins per identifier and per client address
    in ``window_s``; kept in memory, per process."""

    def __init__(self, attempts: int = 5, window_s: float = 300.0) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self._failures: dict[str, list[float]] = {}

    def check(self, *keys: str) -> None:
        now = time.monotonic()
        for key in keys:
            recent = [t for t in self._failures.get(key, ()) if now - t < self.window_s]
            self._failures[key] = recent
            if len(recent) >= self.attempts:
                retry = int(self.window_s - (now - recent[0])) + 1
                raise RateLimited(f"Too many failed logins; try again in {retry} s", retry_after=retry)

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        for key in keys:
            self._failures.setdefault(key, []).append(now)

    def succeeded(self, *keys: str) -> None:
        for key in keys:
            self._failures.pop(key, None)


class Throttle:
    """Failed authentications, counted in the store so that every process on
    the database shares the count: at most ``attempts`` failures per key (an
    account, a login string, a client address) in a window of ``window_s``
    that starts at the first failure.

    Two ways to use it. A login counts the attempt before checking the
    password (``reserve``), so concurrent guesses cannot slip past the limit,
    and takes it back on success. A bearer credential (API key, admin token)
    that is right is always let in; only wrong ones are counted (``failed``)
    and, over the limit, refused with 429 (``over``) after a pause that one
    address's wrong attempts take in turn (``hold``). Since a right credential
    still gets in, the pause is what keeps an attacker from verifying guesses
    at speed."""

    def __init__(self, store: Store, hold_s: float = 1.0) -> None:
        self.store = store
        self.hold_s = hold_s
        self._holds: dict[str, asyncio.Lock] = {}
        self._swept = 0.0

    def _sweep_due(self) -> bool:
        """Rows whose window has passed are deleted about once a minute per process."""
        if time.monotonic() - self._swept < 60:
            return False
        self._swept = time.monotonic()
        return True

    @staticmethod
    def _retry(expires_at: int, now: int) -> int:
        return max(1, -(-(expires_at - now) // 1000))

    def _limited(self, expires_at: int, now: int, what: str) -> RateLimited:
        retry = self._retry(expires_at, now)
        return RateLimited(f"Too many failed {what}; try again in {retry} s", retry_after=retry)

    async def reserve(self, limits: dict[str, int], window_s: float, what: str = "logins") -> None:
        """Count one attempt on each key; RateLimited if any is now over its limit."""
        now, window = now_ms(), int(window_s * 1000)
        sweep = self._sweep_due()

        async def unit(tx: Any) -> list[tuple[str, int, int]]:
            if sweep:
                await q.sweep_failures(tx, now)
            return [(key, *await q.count_failure(tx, key, window, now)) for key in limits]

        for key, failures, expires_at in await self.store.run(unit):
            if failures > limits[key]:
                raise self._limited(expires_at, now, what)

    async def release(self, cleared: tuple[str, ...], taken_back: tuple[str, ...]) -> None:
        """After a success: clear ``cleared`` and take back one reserved failure on ``taken_back``."""

        async def unit(tx: Any) -> None:
            for key in cleared:
                await q.forget_failure(tx, key)
            for key in taken_back:
                await q.forget_failure(tx, key, one=True)

        await self.store.run(unit)

    async def over(self, key: str, limit: int) -> RateLimited | None:
        """The 429 for ``key`` if it is at its limit, else None (a read only)."""
        now = now_ms()
        found = await self.store.read(lambda tx: q.failure_count(tx, key, now))
        if found is None or found[0] < limit:
            return None
        return self._limited(found[1], now, "attempts")

    async def failed(self, key: str, window_s: float) -> None:
        now, sweep = now_ms(), self._sweep_due()

        async def unit(tx: Any) -> None:
            if sweep:
                await q.sweep_failures(tx, now)
            await q.count_failure(tx, key, int(window_s * 1000), now)

        await self.store.run(unit)

    async def hold(self, key: str) -> None:
        """Wait ``hold_s``, one attempt of ``key`` after another (in this process)."""
        lock = self._holds.get(key)
        if lock is None:
            if len(self._holds) > 10_000:
                self._holds = {k: v for k, v in self._holds.items() if v.locked()}
            lock = self._holds[key] = asyncio.Lock()
        async with lock:
            await asyncio.sleep(self.hold_s)


class Accounts:
    # Failed logins: per account (its username and email alike) and per login
    # string nobody has; per client address more, so that one office behind
    # one address is not locked out by a colleague.
    login_attempts = 5
    login_address_attempts = 20
    login_window_s = 300.0
    # Wrong API keys per client address; wrong admin tokens (http/admin.py).
    key_attempts = 20
    key_window_s = 300.0
    admin_attempts = 5

    def __init__(self, store: Store, secret: str, *, access_ttl_s: int = 3600, refresh_ttl_s: int = 30 * 86400) -> None:
        self.store = store
        # passwords in callback URLs are stored sealed (see CallbackUrls)
        self.callback_urls = CallbackUrls(secret)
        self._secret = secret.encode()
        self._jwt_key = self._derive("jwt")
        self.access_ttl_s = access_ttl_s
        self.refresh_ttl_s = refresh_ttl_s
        self.limiter = LoginLimiter()  # SMPP binds (dialects/smpp.py), per process
        self.throttle = Throttle(store)
        # API keys are checked on every request: a short-lived cache spares the
        # database; revoking a key takes effect within the TTL.
        self._key_cache: OrderedDict[str, tuple[float, Account | None]] = OrderedDict()
        self.key_cache_ttl_s = 5.0
        self._private_keys: dict[str, str] = {}

    def _derive(self, purpose: str, seed: str = "") -> bytes:
        return hmac.new(self._secret, f"{purpose}:{seed}".encode(), hashlib.sha256).digest()

    # --- creation ---

    async def create(
        self, *, name: str, email: str, password: str, username: str | None = None,
        region: str = "KE", credits: str | None = None, max_chars: int = 920,
    ) -> dict[str, Any]:
        """Create an account; returns every credential the dialects need, once."""
        email = email.strip().lower()
        if not _EMAIL.match(email):
            raise Invalid(f"'{email}' is not an email address", code="invalid_email")
        if len(password) < 8:
            raise Invalid("The password must have at least 8 characters", code="weak_password")
        region = region.upper()
        if not re.fullmatch(r"[A-Z]{2}", region):
            raise Invalid(f"'{region}' is not a two-letter region code", code="invalid_region")
        username = (username or email.split("@")[0]).strip()
        row = {
            "id": "acc_" + uuid.uuid4().hex[:20],
            "name": name.strip() or username,
            "email": email,
            "username": username,
            "password_hash": await asyncio.to_thread(_hasher.hash, password),
            "region": region,
            "instance_id": str(secrets.randbelow(9_000_000) + 1_000_000),
            "public_key": secrets.token_hex(16),
            "key_seed": secrets.token_hex(16),
            "max_chars": max_chars,
            "created_at": now_ms(),
        }
        api_key = API_KEY_PREFIX + secrets.token_urlsafe(30)
        amount = to_units(credits) if credits else 0

        async def unit(tx: Any) -> None:
            for column in ("email", "username"):
                if await q.account_by(tx, column, row[column]):
                    raise Conflict(f"An account with this {column} already exists", code=f"{column}_taken")
            await q.insert_account(tx, row)
            await q.insert_api_key(tx, row["id"], sha256(api_key), api_key[:8], "default")
            if amount:
                await q.add_ledger(tx, row["id"], "topup", amount, note="initial credits")

        await self.store.run(unit)
        return {
            "account_id": row["id"],
            "name": row["name"],
            "username": username,
            "email": email,
            "region": region,
            "api_key": api_key,
            "instance_id": row["instance_id"],
            "public_key": row["public_key"],
            "private_key": self.private_key(row["key_seed"]),
            "webhook_secret": self.webhook_secret(row["key_seed"]),
        }

    def private_key(self, key_seed: str) -> str:
        # an HMAC per Messangi call otherwise; a pure function of the seed
        found = self._private_keys.get(key_seed)
        if found is None:
            if len(self._private_keys) > 10_000:
                self._private_keys.clear()
            found = self._private_keys[key_seed] = self._derive("private-key", key_seed).hex()
        return found

    def webhook_secret(self, key_seed: str) -> str:
        return "whsec_" + base64.b64encode(self._derive("webhook", key_seed)).decode()

    async def new_api_key(self, account_id: str, label: str = "") -> str:
        api_key = API_KEY_PREFIX + secrets.token_urlsafe(30)
        await self.store.run(lambda tx: q.insert_api_key(tx, account_id, sha256(api_key), api_key[:8], label))
        return api_key

    # --- lookups ---

    async def get(self, account_id: str) -> Account:
        row = await self.store.read(lambda tx: q.account_by(tx, "id", account_id))
        if row is None:
            raise NotFound(f"No account {account_id}")
        return Account.from_row(row)

    async def resolve(self, ref: str) -> Account:
        """The account an operator names by its id, username or email."""
        ref = ref.strip()
        rows = await self.store.read(lambda tx: q.accounts_by_ref(tx, ref))
        if not rows:
            raise NotFound(f"No account '{ref}' (by id, username or email); `ujumbe accounts list` shows them")
        if len(rows) > 1:  # one's username is another's email: only the id says which
            ids = ", ".join(sorted(r["id"] for r in rows))
            exact = [r for r in rows if r["id"] == ref]
            if not exact:
                raise Conflict(f"'{ref}' names more than one account ({ids}); give the id", code="ambiguous_account")
            rows = exact
        return Account.from_row(rows[0])

    async def list_all(self) -> list[dict[str, Any]]:
        return await self.store.read(q.list_accounts)

    async def details(self, account_id: str) -> dict[str, Any]:
        """An account for the operator: its row (no password hash or seed), balance, keys' prefixes, numbers."""

        async def read(tx: Any) -> dict[str, Any]:
            row = await q.account_by(tx, "id", account_id)
            if row is None:
                raise NotFound(f"No account {account_id}")
            for secret in ("password_hash", "key_seed"):
                row.pop(secret)
            return {**row, "api_keys": await q.api_keys_of(tx, account_id), "numbers": await q.numbers_of(tx, account_id)}

        return await self.store.read(read)

    async def find(self, column: str, value: str) -> Account | None:
        row = await self.store.read(lambda tx: q.account_by(tx, column, value))
        return None if row is None else Account.from_row(row)

    async def by_login(self, login: str) -> Account | None:
        row = await self.store.read(lambda tx: q.account_by_login(tx, login))
        return None if row is None else Account.from_row(row)

    async def _cached(self, key: str, load: Callable[[], Awaitable[Account | None]]) -> Account | None:
        """The account cached under ``key`` for ``key_cache_ttl_s``, else ``load()``'s."""
        hit = self._key_cache.get(key)
        now = time.monotonic()
        if hit and now - hit[0] < self.key_cache_ttl_s:
            return hit[1]
        account = await load()
        self._key_cache[key] = (now, account)
        if len(self._key_cache) > 10_000:
            self._key_cache.popitem(last=False)
        return account

    async def by_public_key(self, public_key: str) -> Account | None:
        """The account with this Messangi public key (even if disabled), or
        None; cached as API keys are (Messangi's send names it on every call)."""
        # "public:" never begins a sha256 hex digest, the API keys' entries
        return await self._cached("public:" + public_key, lambda: self.find("public_key", public_key))

    async def by_api_key(self, api_key: str) -> Account | None:
        """The account holding this key (even if disabled), or None."""
        digest = sha256(api_key)

        async def load() -> Account | None:
            row = await self.store.read(lambda tx: q.account_by_api_key(tx, digest))
            return Account.from_row(row) if row else None

        return await self._cached(digest, load)

    def forget_cached_keys(self) -> None:
        """Drop the key cache, so a key just revoked (or an account just
        suspended) is refused at once in this process, not after the TTL."""
        self._key_cache.clear()

    async def authenticate_api_key(self, api_key: str, client: str = "") -> Account:
        """The active account holding this key; unknown keys and disabled
        accounts are told apart by the error code (some dialects need that).
        Wrong keys are counted per client address: over the limit they are
        answered 429 (a right key still gets in)."""
        account = await self.by_api_key(api_key)
        if account is None:
            if client:
                await self.refuse_key(client)
            raise Unauthorized("Unknown or revoked API key", code="invalid_api_key")
        if not account.active:
            raise Unauthorized("This account is disabled", code="account_disabled")
        return account

    async def refuse_key(self, client: str) -> None:
        """A wrong API key, or a wrong key of a dialect's own (Messangi's public
        key or signature), from this client address: one count for them all."""
        await self.refuse_credential(f"key:{client}", self.key_attempts)

    async def refuse_credential(self, key: str, limit: int) -> None:
        """A wrong bearer credential from ``key`` (a client address): counted;
        at the limit, RateLimited after the hold."""
        limited = await self.throttle.over(key, limit)
        if limited is not None:
            await self.throttle.hold(key)
            raise limited
        await self.throttle.failed(key, self.key_window_s)

    # --- passwords and tokens ---

    async def verify_password(self, login: str, password: str, client: str = "") -> Account:
        row = await self.store.read(lambda tx: q.account_by_login(tx, login))
        # Counted per account, so its username and email share one limit, and
        # counted before the password is checked, so parallel guesses do too.
        who = f"account:{row['id']}" if row is not None else f"login:{login.lower()}"
        limits = {who: self.login_attempts}
        if client:
            limits[f"addr:{client}"] = self.login_address_attempts
        await self.throttle.reserve(limits, self.login_window_s)
        ok = False
        if row is not None:
            try:
                ok = await asyncio.to_thread(_hasher.verify, row["password_hash"], password)
            except VerificationError:
                ok = False
        else:
            # spend the same time on unknown users, so timing does not reveal them
            await asyncio.to_thread(_hasher.hash, password)
        if not ok or not row["active"]:
            raise Unauthorized("Wrong username or password", code="invalid_credentials")
        await self.throttle.release((who,), tuple(k for k in limits if k != who))
        return Account.from_row(row)

    async def issue_tokens(self, account: Account, ttl_s: int | None = None) -> dict[str, Any]:
        ttl = ttl_s or self.access_ttl_s
        now = int(time.time())
        access = jwt.encode(
            {"sub": account.id, "typ": "access", "iat": now, "exp": now + ttl, "jti": uuid.uuid4().hex},
            self._jwt_key,
            algorithm="HS256",
        )
        refresh = secrets.token_urlsafe(48)
        await self.store.run(
            lambda tx: q.insert_refresh_token(tx, sha256(refresh), account.id, now_ms() + self.refresh_ttl_s * 1000)
        )
        return {"access_token": access, "refresh_token": refresh, "expires_in": ttl, "token_type": "bearer"}

    async def refresh(self, refresh_token: str, ttl_s: int | None = None) -> dict[str, Any]:
        """Trade a refresh token for new tokens; each refresh token works once."""
        account_id = await self.store.run(lambda tx: q.use_refresh_token(tx, sha256(refresh_token)))
        if account_id is None:
            raise Unauthorized("The refresh token is invalid, used or expired", code="invalid_refresh_token")
        try:
            account = await self.get(account_id)
        except NotFound:
            raise Unauthorized("The refresh token is invalid, used or expired", code="invalid_refresh_token") from None
        return await self.issue_tokens(account, ttl_s)

    async def access_from_refresh(self, refresh_token: str, ttl_s: int | None = None) -> str:
        """An access token for a refresh token that stays valid until it
        expires (TingTing's clients keep one refresh token; native refreshes
        spend theirs, see ``refresh``)."""
        account_id = await self.store.read(lambda tx: q.refresh_token_owner(tx, sha256(refresh_token), now_ms()))
        if account_id is None:
            raise Unauthorized("The refresh token is invalid, used or expired", code="invalid_refresh_token")
        try:
            account = await self.get(account_id)
        except NotFound:
            raise Unauthorized("The refresh token is invalid, used or expired", code="invalid_refresh_token") from None
        now = int(time.time())
        return jwt.encode(
            {"sub": account.id, "typ": "access", "iat": now, "exp": now + (ttl_s or self.access_ttl_s),
             "jti": uuid.uuid4().hex},
            self._jwt_key, algorithm="HS256",
        )

    def account_id_from_token(self, token: str) -> str:
        try:
            claims = jwt.decode(token, self._jwt_key, algorithms=["HS256"], options={"require": ["exp", "sub"]})
        except jwt.ExpiredSignatureError:
            raise Unauthorized("The access token has expired", code="token_expired") from None
        except jwt.PyJWTError:
            raise Unauthorized("The access token is invalid", code="invalid_token") from None
        if claims.get("typ") != "access":
            raise Unauthorized("The access token is invalid", code="invalid_token")
        return str(claims["sub"])

    async def authenticate_bearer(self, token: str, client: str = "") -> Account:
        """An API key or an access token, as sent in ``Authorization: Bearer``."""
        if token.startswith(API_KEY_PREFIX):
            return await self.authenticate_api_key(token, client)
        try:
            account = await self.get(self.account_id_from_token(token))
        except NotFound:
            # signed by us, but its account is gone: as invalid as a forged one
            raise Unauthorized("The access token is invalid", code="invalid_token") from None
        if not account.active:
            raise Unauthorized("This account is disabled", code="account_disabled")
        return account

    # --- settings ---

    async def set_callbacks(self, account_id: str, urls: dict[str, str | None]) -> Account:
        current = await self.get(account_id)
        sealed = {
            # a URL sent back as an answer showed it (password masked) keeps its password
            column: getattr(current, column) if url and ":***@" in url and url == masked(getattr(current, column))
            else self.callback_urls.seal(url)
            for column, url in urls.items()
        }
        await self.store.run(lambda tx: q.update_callbacks(tx, account_id, sealed))
        self._key_cache.clear()
        return await self.get(account_id)
