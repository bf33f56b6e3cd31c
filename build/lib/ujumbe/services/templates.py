"""Message templates per account, found by key and channel."""

from __future__ import annotations

import re
from typing import Any

from ujumbe.core.errors import Invalid, NotFound
from ujumbe.store import Store
from ujumbe.store import accounts as q

_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
CHANNELS = ("sms", "email", "voice")


class Templates:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def put(self, account_id: str, key: str, channel: str, body: str, subject: str | None = None) -> dict[str, Any]:
        if not _KEY.match(key):
            raise Invalid("A template key is 1-100 letters, digits or _ . : -", code="invalid_template_key")
        if channel not in CHANNELS:
            raise Invalid(f"'{channel}' is not a channel; use sms, email or voice", code="invalid_channel")
        if not body.strip():
            raise Invalid("The template body is empty", code="invalid_template")
        await self.store.run(lambda tx: q.put_template(tx, account_id, key, channel, body, subject))
        return await self.get(account_id, key, channel)

    async def get(self, account_id: str, key: str, channel: str = "sms") -> dict[str, Any]:
        found = await self.store.read(lambda tx: q.get_template(tx, account_id, key, channel))
        if found is None:
            raise NotFound(f"No {channel} template '{key}'", code="template_not_found")
        return found

    async def list(self, account_id: str) -> list[dict[str, Any]]:
        return await self.store.read(lambda tx: q.list_templates(tx, account_id))

    async def delete(self, account_id: str, key: str, channel: str = "sms") -> None:
        if not await self.store.run(lambda tx: q.delete_template(tx, account_id, key, channel)):
            raise NotFound(f"No {channel} template '{key}'", code="template_not_found")
