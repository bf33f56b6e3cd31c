"""The built-in email simulator: a relay in a box for the embedded default.

It builds each message as the SMTP connector would (so bad input shows up the
same way), keeps it in ``sent``, and answers by the recipient's local part:

| address | outcome |
|---|---|
| reject@… | 550 at RCPT: failed (permanent, refunded) |
| defer@… | 451 twice (retried with backoff), then accepted and delivered |
| bounce@… | accepted, then an asynchronous bounce: undelivered (5.1.1 user unknown) |
| silent@… | accepted, no word after (expires after the validity period) |
| anything else | accepted, delivered after a short delay |
"""

from __future__ import annotations

import asyncio
import random
import time

from ujumbe.channels.base import Channel, Outbound, Receipt, SendError, Submitted
from ujumbe.channels.email.mime import build
from ujumbe.core.states import State

NAME = "email-simulator"


class EmailSimulator(Channel):
    kind = "email"
    max_in_flight = 1000

    def __init__(self, *, receipt_delay_ms: tuple[int, int] = (500, 3000), name: str = NAME) -> None:
        super().__init__()
        self.name = name
        self.receipt_delay_ms = receipt_delay_ms
        self._deferred: dict[str, int] = {}
        self._stopped = False
        self.sent: list[bytes] = []  # the messages as they would have gone out, for tests and demos

    async def _send(self, msg: Outbound) -> Submitted:
        local = msg.recipient.partition("@")[0].lower()
        if local == "reject":
            raise SendError("RCPT 550 5.1.1 mailbox unavailable (simulated)", transient=False, code="550")
        if local == "defer":
            seen = self._deferred.get(msg.message_id, 0)
            if seen < 2:
                self._deferred[msg.message_id] = seen + 1
                raise SendError("RCPT 451 4.7.1 try again later (simulated)", transient=True, code="451")
        built = build(msg)
        self.sent.append(built.data)
        if len(self.sent) > 10_000:
            del self.sent[:5_000]
        if local != "silent":
            self.replay(built.message_id, msg.recipient)
        return Submitted([built.message_id])

    def replay(self, op_id: str, recipient: str) -> None:
        """Report a message accepted before a restart (as runtime does for the SMS simulator)."""
        bounce = recipient.partition("@")[0].lower() == "bounce"
        outcome = (State.UNDELIVERED, "5.1.1", "user_unknown", "dsn action=failed status=5.1.1") if bounce else (
            State.DELIVERED, "", "", "dsn action=delivered status=2.0.0")
        low, high = self.receipt_delay_ms
        asyncio.get_running_loop().call_later(random.uniform(low, high) / 1000, self._report, op_id, *outcome)

    def _report(self, op_id: str, state: State, code: str, reason: str, raw: str) -> None:
        if self.events is None or self._stopped:
            return
        asyncio.ensure_future(self.events.receipt(Receipt(self.name, op_id, state, int(time.time() * 1000), code, reason, raw)))

    async def stop(self) -> None:
        self._stopped = True
