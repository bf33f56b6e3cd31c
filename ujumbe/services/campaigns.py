"""Campaigns: numbers with tags, one message rendered per number, sent through
the ordinary pipeline at a pace, with the credits held before and settled per
number after.

Money, in ledger rows (all exact, in ledger units):
- ``begin`` holds what the run can cost (each number's rendered text, its
  parts, its network's price): one ``hold`` row, taken only if the balance
  covers it; each number keeps its share in ``held``.
- each batch sent gives its numbers' shares back (``release``) in the send's
  own transaction, just before ``Messaging.send`` charges the real cost
  (``charge``), so a send is always covered by what was held for it.
- a message that never reached the operator is refunded by the lifecycle as any
  message is; the number's ``credit_consumed`` is what its message finally cost.
- ``stop`` releases what is held for the numbers not sent (they end terminated).

PHONE numbers are calls (channel voice): the hold is what Messaging holds for
each call (its price for every started minute the audio can last, or once
per call), the call's outcome is the number's status, its duration and
playback are the number's, and what the call finally cost (the rest of its
hold refunded by the lifecycle) is ``credit_consumed``. SMS,PHONE sends each
number a text and a call; the number's status is the call's, its
``credit_consumed`` both. ``stop`` also ends the calls in progress
(terminated, reason stopped).

SMS,PHONE sends a batch's texts first (their send releases the whole hold,
text and call, as an SMS batch's does), then its calls at once; a call the
balance can no longer cover then (another send of the account spent the
released credits in between) fails its number, whose text was sent. A number
whose text went and whose call did not (refused, not covered, or the campaign
stopped in between) stays running until its text is final, so its
``credit_consumed`` is what the text was charged, as the ledger shows.
"""

from __future__ import annotations

import asyncio
import csv
import hmac
import inspect
import io
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ujumbe.core import calls
from ujumbe.core import campaigns as rules
from ujumbe.core import encoding, numbers
from ujumbe.core import speech as speech_rules
from ujumbe.core.calls import VoiceOptions
from ujumbe.core.errors import ChannelUnavailable, Conflict, InsufficientCredit, Invalid, NotFound, UjumbeError
from ujumbe.core.pricing import display
from ujumbe.services.accounts import Account
from ujumbe.services.messaging import Messaging, Recipient, SendRequest
from ujumbe.services.xlsx import SheetWriter
from ujumbe.store import Store, Tx, now_ms
from ujumbe.store import campaigns as q

log = logging.getLogger("ujumbe.campaigns")

MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_ROWS = 200_000
IMPORT_CHUNK = 5000
LEASE_MS = 60_000
SEND_BATCH = 250  # numbers per Messaging.send: short enough for PostgreSQL to group an account's sends
VOICE_TEST_TTL_MS = 3_600_000
NUMBER_HEADERS = ("number", "numbers", "phone", "phone_number", "mobile", "msisdn", "contact", "contact_number")


class _Stale(Exception):
    """Numbers claimed for a send were stopped meanwhile: send nothing."""


@dataclass(slots=True)
class RowError:
    row: int  # 1-based, as a spreadsheet shows it (the header is row 1)
    number: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "number": self.number, "reason": self.reason}


def _fail(exc: rules.RuleError) -> Invalid:
    return Invalid(str(exc), code=exc.code)


def read_contacts(filename: str, data: bytes) -> Iterator[tuple[int, object, dict[str, object]]]:
    """(row number, number cell, tags) of a csv or xlsx file: one column of
    numbers (headed number/phone/mobile..., else the first), every other
    column a tag named by its header. A first row whose number cell is digits
    is data, not a header (its other columns are then tags column_2, ...)."""
    name = filename.lower()
    if name.endswith(".xlsx") or data[:2] == b"PK":
        rows = _xlsx_rows(data)
    elif name.endswith((".csv", ".txt")) or not name:
        rows = _csv_rows(data)
    else:
        raise Invalid(f"'{filename}' is neither .xlsx nor .csv", code="invalid_file")
    first = next(rows, None)
    if first is None:
        return
    header = [rules.clean_tag_name(c) if c is not None else "" for c in first]
    lowered = [h.lower() for h in header]
    col = next((i for i, h in enumerate(lowered) if h in NUMBER_HEADERS), None)
    start = 2
    if col is None:
        col = 0
        if first and rules.number_text(first[0]).lstrip("+").isdigit():
            header = ["number"] + [f"column_{i + 1}" for i in range(1, len(first))]
            start = 1
            rows = _chain([first], rows)
    names = [(i, h) for i, h in enumerate(header) if i != col and h]
    for n, row in enumerate(rows, start):
        if not row or all(c is None or str(c).strip() == "" for c in row):
            continue
        cell = row[col] if col < len(row) else None
        tags = {h: row[i] for i, h in names if i < len(row) and row[i] is not None and str(row[i]) != ""}
        yield n, cell, tags


def _chain(first: list[Any], rest: Iterator[Any]) -> Iterator[Any]:
    yield from first
    yield from rest


def _csv_rows(data: bytes) -> Iterator[list[object]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Invalid("The csv file is not UTF-8 text", code="invalid_file") from None
    for row in csv.reader(io.StringIO(text)):
        yield [c.strip() if c.strip() else None for c in row]


def _xlsx_rows(data: bytes) -> Iterator[list[object]]:
    import zipfile

    import openpyxl

    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise Invalid(f"The file is not a readable xlsx workbook: {exc}", code="invalid_file") from None
    try:
        sheet = book.worksheets[0]
        for row in sheet.iter_rows(values_only=True):
            yield list(row)
    finally:
        book.close()


def _tags_json(tags: dict[str, object]) -> str:
    return json.dumps({k: (rules.tag_text(v) if isinstance(v, float) else v if isinstance(v, (int, str)) else str(v))
                       for k, v in tags.items()}, ensure_ascii=False)


def normalize_rows(rows: Sequence[tuple[int, object, dict[str, object]]], region: str, seen: set[str]
                   ) -> tuple[list[tuple[str, str | None, str]], list[RowError]]:
    good: list[tuple[str, str | None, str]] = []
    bad: list[RowError] = []
    for n, cell, tags in rows:
        raw = rules.number_text(cell)
        if not raw:
            bad.append(RowError(n, "", "no number in this row"))
            continue
        try:
            num = numbers.normalize(raw, region)
        except numbers.InvalidNumber as exc:
            bad.append(RowError(n, raw, exc.reason))
            continue
        if num.e164 in seen:
            bad.append(RowError(n, raw, f"{num.e164} is already in this campaign"))
            continue
        seen.add(num.e164)
        good.append((num.e164, num.network, _tags_json(tags)))
    return good, bad


class Campaigns:
    def __init__(self, store: Store, messaging: Messaging, *, default_rate: int = 100) -> None:
        self.store = store
        self.messaging = messaging
        self.default_rate = max(1, default_rate)
        # set by runtime: services/speech (uploaded audio), and the voice channels
        # of this process, to end a stopped campaign's calls (message ids -> how many ended)
        self.speech: Any = None
        self.hang_up: Callable[[Sequence[int]], int] | None = None
        self.live_calls: Callable[[], int] | None = None
        self.call_capacity: Callable[[], int | None] | None = None  # calls this process can hold at once

    # --- voice: what a call says or plays ---

    def _voice_fields(self, voice: str | None, length_factor: object) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if voice is not None and voice != "":
            try:
                fields["voice"] = speech_rules.check_voice(voice)
            except speech_rules.SpeechError as exc:
                raise Invalid(str(exc), code=exc.code) from None
        try:
            factor = rules.length_factor(length_factor, *calls.LENGTH_FACTOR_RANGE)
        except rules.RuleError as exc:
            raise _fail(exc) from None
        if factor is not None:
            fields["length_factor"] = repr(factor)
        return fields

    async def _audio_ms(self, account: Account, audio_id: str) -> int:
        # ids are positive 64-bit integers (services/speech): anything else is no audio, not a query
        real = audio_id.isascii() and audio_id.isdigit() and len(audio_id) <= 18
        length = await self.messaging.audio_ms(account.id, audio_id) if self.messaging.audio_ms and real else None
        if length is None:
            raise Invalid(f"No audio {audio_id} (upload the file as aud_file, or with POST /v1/audio)",
                          code="audio_not_found")
        return int(length)

    async def save_audio(self, account: Account, filename: str, data: bytes) -> str:
        """An uploaded campaign audio kept through services/speech; its id."""
        if self.speech is None or not hasattr(self.speech, "save_audio"):
            raise ChannelUnavailable("Uploaded audio needs the speech service, which is not installed on this server")
        if not data:
            raise Invalid("The audio file is empty", code="invalid_audio")
        saved = self.speech.save_audio(account.id, data, filename)
        if inspect.isawaitable(saved):
            saved = await saved
        return str(saved["id"] if isinstance(saved, dict) else getattr(saved, "id", saved))

    # --- time zones ---

    async def zone(self, account: Account) -> Any:
        tz = await self.store.read(lambda tx: q.account_time_zone(tx, account.id))
        return rules.zone_of(tz, account.region)

    async def set_time_zone(self, account: Account, zone: str | None) -> str:
        if zone:
            try:
                rules.check_zone(zone)
            except rules.RuleError as exc:
                raise _fail(exc) from None
        await self.store.run(lambda tx: q.set_time_zone(tx, account.id, zone or None))
        return str(rules.zone_of(zone, account.region))

    # --- campaigns ---

    def _services(self, value: str | Sequence[str]) -> str:
        try:
            services = rules.parse_services(value)
        except rules.RuleError as exc:
            raise _fail(exc) from None
        if "PHONE" in services and "voice" not in self.messaging.channels:
            raise ChannelUnavailable("The voice channel is not configured on this server: PHONE campaigns cannot run")
        if "SMS" in services and "sms" not in self.messaging.channels:
            raise ChannelUnavailable("The sms channel is not configured on this server")
        return ",".join(services)

    async def create(
        self, account: Account, *, name: str, services: str | Sequence[str], description: str = "",
        message: str | None = None, sender: str | None = None, rate: int | None = None,
        numbers_in: Sequence[tuple[object, dict[str, object]]] = (), voice: str | None = None,
        length_factor: object = None, audio: str | None = None,
    ) -> tuple[dict[str, Any], list[RowError]]:
        name = (name or "").strip()
        if not name:
            raise Invalid("The campaign needs a name", code="missing_name")
        svc = self._services(services)
        voice_fields = self._voice_fields(voice, length_factor)
        if audio:
            await self._audio_ms(account, audio)
            voice_fields["audio"] = audio
        if rate is not None and not 1 <= rate <= 100_000:
            raise Invalid("'rate' must be between 1 and 100000 messages a second", code="invalid_rate")
        if sender:
            await self.messaging.senders.check_use(account.id, sender)
        now = now_ms()
        row = {
            "account_id": account.id, "name": name, "description": description or "", "services": svc,
            "message": message, "sender": sender or None, "rate": rate or 0, "status": rules.C_NOT_STARTED,
            "usable_tags": "[]", "created_at": now, "updated_at": now, **voice_fields,
        }
        rows = [(i, cell, tags) for i, (cell, tags) in enumerate(numbers_in, 1)]
        good, bad = normalize_rows(rows, account.region, set())
        tags = sorted({k for _, _, t in good for k in json.loads(t)})

        async def unit(tx: Tx) -> int:
            row["usable_tags"] = json.dumps(tags)
            cid = await q.insert_campaign(tx, row)
            await q.insert_numbers(tx, cid, account.id, good)
            return cid

        cid = await self.store.run(unit)
        return await self.get(account, cid), bad

    async def get(self, account: Account, campaign_id: int) -> dict[str, Any]:
        found = await self.store.read(lambda tx: q.campaign(tx, account.id, campaign_id))
        if found is None:
            raise NotFound(f"No campaign {campaign_id}", code="campaign_not_found")
        return _campaign_out(found)

    async def list(self, account: Account, *, offset: int, limit: int) -> tuple[int, list[dict[str, Any]]]:
        total, rows = await self.store.read(lambda tx: q.campaigns_page(tx, account.id, offset=offset, limit=limit))
        return total, [_campaign_out(r) for r in rows]

    async def update(self, account: Account, campaign_id: int, **changes: Any) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if changes.get("name") is not None:
            if not str(changes["name"]).strip():
                raise Invalid("The campaign needs a name", code="missing_name")
            fields["name"] = str(changes["name"]).strip()
        if changes.get("services") is not None:
            fields["services"] = self._services(changes["services"])
        for key in ("description", "message", "sender"):
            if changes.get(key) is not None:
                fields[key] = changes[key]
        if changes.get("rate") is not None:
            if not 1 <= int(changes["rate"]) <= 100_000:
                raise Invalid("'rate' must be between 1 and 100000 messages a second", code="invalid_rate")
            fields["rate"] = int(changes["rate"])
        if fields.get("sender"):
            await self.messaging.senders.check_use(account.id, fields["sender"])
        fields.update(self._voice_fields(changes.get("voice"), changes.get("length_factor")))
        if changes.get("audio"):
            await self._audio_ms(account, changes["audio"])
            fields["audio"] = changes["audio"]

        async def unit(tx: Tx) -> None:
            if await q.campaign(tx, account.id, campaign_id, lock=True) is None:
                raise NotFound(f"No campaign {campaign_id}", code="campaign_not_found")
            if fields:
                await q.update_campaign(tx, campaign_id, fields)

        await self.store.run(unit)
        return await self.get(account, campaign_id)

    async def delete(self, account: Account, campaign_id: int) -> dict[str, Any]:
        """Stop it (releasing what is held) and remove it from the lists; its
        ledger rows and messages stay."""
        found = await self.stop(account, campaign_id, missing_ok=False, quiet=True)

        async def unit(tx: Tx) -> None:
            await q.update_campaign(tx, campaign_id, {"deleted_at": now_ms()})
            # its reports and uploaded contact files go with it (jobs of a deleted campaign are never served)
            await q.purge_campaign_jobs(tx, campaign_id)

        await self.store.run(unit)
        return found

    # --- numbers ---

    async def add_numbers(
        self, account: Account, campaign_id: int, entries: Sequence[tuple[object, dict[str, object]]],
    ) -> tuple[list[dict[str, Any]], list[RowError]]:
        camp = await self.get(account, campaign_id)
        rows = [(i, cell, tags) for i, (cell, tags) in enumerate(entries, 1)]

        async def unit(tx: Tx) -> list[dict[str, Any]]:
            seen = await q.existing_numbers(tx, campaign_id)
            good, bad = normalize_rows(rows, account.region, seen)
            errors.extend(bad)
            await q.insert_numbers(tx, campaign_id, account.id, good)
            await self._add_tags(tx, camp, good)
            added = {n for n, _, _ in good}
            page = await tx.fetch(
                f"SELECT {q.NUMBER} FROM campaign_numbers WHERE campaign_id = ? ORDER BY id DESC LIMIT ?",
                campaign_id, max(1, len(good)),
            )
            return [dict(r) for r in page if r["number"] in added]

        errors: list[RowError] = []
        added = await self.store.run(unit)
        return [_number_out(n, camp["name"]) for n in reversed(added)], errors

    async def _add_tags(self, tx: Tx, camp: dict[str, Any], good: Sequence[tuple[str, str | None, str]]) -> None:
        tags = set(camp["usable_tags"])
        new = {k for _, _, t in good for k in json.loads(t)} - tags
        if new:
            current = await q.campaign_by_id(tx, camp["id"])
            merged = sorted(set(json.loads(current["usable_tags"]) if current else []) | new | tags)
            await q.update_campaign(tx, camp["id"], {"usable_tags": json.dumps(merged)})

    async def numbers(self, account: Account, campaign_id: int, *, after: int = 0, limit: int = 1000,
                      status: str | None = None) -> list[dict[str, Any]]:
        camp = await self.get(account, campaign_id)
        rows = await self.store.read(lambda tx: q.numbers_page(tx, campaign_id, after=after, limit=limit, status=status))
        return [_number_out(r, camp["name"]) for r in rows]

    async def number(self, account: Account, number_id: int) -> dict[str, Any]:
        async def unit(tx: Tx) -> tuple[dict[str, Any], dict[str, Any]] | None:
            n = await q.number(tx, account.id, number_id)
            if n is None:
                return None
            c = await q.campaign(tx, account.id, n["campaign_id"])
            return None if c is None else (n, c)

        found = await self.store.read(unit)
        if found is None:
            raise NotFound(f"No number {number_id}", code="number_not_found")
        return _number_out(found[0], found[1]["name"])

    async def edit_number(self, account: Account, number_id: int, *, number: object | None = None,
                          tags: dict[str, object] | None = None) -> dict[str, Any]:
        current = await self.number(account, number_id)
        if current["status"] in (rules.SCHEDULED, rules.RUNNING):
            raise Conflict("The number is in a run; stop the campaign to edit it", code="number_in_run")
        fields: dict[str, Any] = {}
        if number is not None:
            raw = rules.number_text(number)
            try:
                num = numbers.normalize(raw, account.region)
            except numbers.InvalidNumber as exc:
                raise Invalid(exc.reason, code="invalid_number") from None
            fields["number"], fields["network"] = num.e164, num.network
        if tags is not None:
            fields["tags"] = _tags_json(tags)

        async def unit(tx: Tx) -> None:
            if "number" in fields and fields["number"] != current["number"]:
                clash = await tx.fetchval(
                    "SELECT 1 FROM campaign_numbers WHERE campaign_id = ? AND number = ?",
                    current["campaign_id"], fields["number"],
                )
                if clash:
                    raise Conflict(f"{fields['number']} is already in this campaign", code="duplicate_number")
            if fields:
                await q.update_number(tx, number_id, fields)
                if "tags" in fields:
                    camp = await q.campaign(tx, account.id, current["campaign_id"])
                    if camp is not None:
                        await self._add_tags(tx, _campaign_out(camp), [("", None, fields["tags"])])

        await self.store.run(unit)
        return await self.number(account, number_id)

    async def delete_number(self, account: Account, number_id: int) -> dict[str, Any]:
        current = await self.number(account, number_id)
        if current["status"] in (rules.SCHEDULED, rules.RUNNING):
            raise Conflict("The number is in a run; stop the campaign to delete it", code="number_in_run")
        await self.store.run(lambda tx: q.delete_number(tx, number_id))
        return current

    # --- begin, pause, resume, stop ---

    async def begin(
        self, account: Account, campaign_id: int, *, message: str | None = None, schedule: str | None = None,
        statuses: str | Sequence[str] | None = None, individual: Sequence[int] | None = None,
        rate: int | None = None, audio: str | None = None, voice: str | None = None,
        length_factor: object = None, priority: str | None = None,
    ) -> dict[str, Any]:
        """Start a run: the numbers chosen (``individual`` ids), else those with
        the ``statuses`` given (a re-run), else every number not started.
        Holds what the run can cost; answers what is on hold. PHONE: the
        calls speak the message (``voice``, ``length_factor``) or play the
        ``audio`` (an uploaded audio's id); ``priority`` picks one when the
        campaign has both (core.campaigns.plays_audio)."""
        try:
            wanted = rules.rerun_statuses(statuses)
        except rules.RuleError as exc:
            raise _fail(exc) from None
        schedule_at = None
        if schedule:
            try:
                schedule_at = rules.parse_schedule(schedule, await self.zone(account))
            except rules.RuleError as exc:
                raise _fail(exc) from None
        if rate is not None and not 1 <= rate <= 100_000:
            raise Invalid("'rate' must be between 1 and 100000 messages a second", code="invalid_rate")
        camp = await self.get(account, campaign_id)
        services = self._services(camp["services"]).split(",")  # a channel removed since it was created
        text = message if message is not None else camp["message"]
        voice_fields = self._voice_fields(voice, length_factor)
        run_audio: str | None = None
        vo: VoiceOptions | None = None
        if "PHONE" in services:
            try:
                play = rules.plays_audio(priority=priority, new_message=bool(message and message.strip()),
                                         new_audio=bool(audio), has_message=bool(camp["message"]),
                                         has_audio=bool(camp["audio"]))
            except rules.RuleError as exc:
                raise _fail(exc) from None
            vo = VoiceOptions(voice=voice_fields.get("voice") or camp["voice"] or calls.DEFAULT_VOICE,
                              length_factor=float(voice_fields.get("length_factor") or camp["length_factor"] or 1.0))
            if play:
                run_audio = audio or camp["audio"]
                vo.audio_id, vo.audio_ms = run_audio, await self._audio_ms(account, run_audio)  # type: ignore[arg-type]
            if audio:
                voice_fields["audio"] = audio
        elif audio or priority == "audio":
            raise Invalid("Audio is for PHONE campaigns; this one sends SMS", code="invalid_request")
        speaks = "SMS" in services or run_audio is None
        if speaks and (not text or not text.strip()):
            raise Invalid("Give the message to send (the campaign has none)", code="missing_text")
        text = text or ""
        if individual is not None:
            ids = [int(i) for i in individual]
            if not ids:
                raise Invalid("'individual' lists no numbers", code="missing_numbers")
            chosen_statuses: Sequence[str] = [s for s in rules.NUMBER_STATUSES if s not in (rules.SCHEDULED, rules.RUNNING)]
        else:
            ids = None
            chosen_statuses = wanted or (rules.NOT_STARTED,)
        prices = await self.messaging.prices()
        usable = camp["usable_tags"]

        async def unit(tx: Tx) -> dict[str, Any]:
            c = await q.campaign(tx, account.id, campaign_id, lock=True)
            if c is None:
                raise NotFound(f"No campaign {campaign_id}", code="campaign_not_found")
            if c["status"] in rules.ACTIVE:
                raise Conflict(f"The campaign is {c['status']}; stop it before another run", code="campaign_active")
            if await q.import_running(tx, campaign_id):
                # a run now would hold for, and send to, only part of the file
                raise Conflict("Numbers are still being imported into this campaign; begin once the import job "
                               "is done", code="import_running")
            rows = await q.selectable(tx, campaign_id, chosen_statuses, ids)
            if ids is not None and len(rows) != len(set(ids)):
                found = {r[0] for r in rows}
                missing = [i for i in ids if i not in found]
                raise Invalid(f"No such numbers (or in a run) in this campaign: {missing}", code="invalid_numbers",
                              numbers=missing)
            if not rows:
                raise Invalid("No numbers to send to" + (f" with status {', '.join(wanted)}" if wanted else
                              " that have not been sent to; give 'status' to re-run"), code="no_numbers")
            cache: dict[tuple[str, str | None], int] = {}
            held_rows = []
            total = 0
            for nid, network, tags_json in rows:
                body = rules.render(text, json.loads(tags_json), usable) if "{" in text else text
                key = (body, network)
                cost = cache.get(key)
                if cost is None:
                    cost = 0
                    if "SMS" in services:
                        cost += prices.cost(network, encoding.count_parts(body)[1], "sms")
                    if vo is not None:  # what Messaging holds for the call, exactly
                        cost += Messaging._call_hold(prices, network, vo, body)
                    cache[key] = cost
                held_rows.append((cost, nid))
                total += cost
            note = f"{display(total)} credits on hold for {c['name']} campaign"
            if total:
                balance = await q.add_ledger(tx, account.id, "hold", -total, campaign_id, note)
                if balance is None:
                    have = await tx.fetchval("SELECT balance FROM accounts WHERE id = ?", account.id)
                    raise InsufficientCredit(
                        f"Insufficient credit: this run needs {display(total)} credits on hold and the balance is "
                        f"{display(have)}", cost=display(total), balance=display(have),
                    )
            await q.schedule_numbers(tx, held_rows)
            status = rules.C_SCHEDULED if schedule_at and schedule_at > now_ms() else rules.C_RUNNING
            fields: dict[str, Any] = {"status": status, "schedule_at": schedule_at, "run_message": text,
                                      "held": c["held"] + total, "run_audio": run_audio, **voice_fields}
            if message is not None:
                fields["message"] = message
            if rate is not None:
                fields["rate"] = rate
            await q.update_campaign(tx, campaign_id, fields)
            tx.notify("campaigns")
            return {"campaign_id": campaign_id, "status": status, "numbers": len(rows), "held": total,
                    "hold_note": note, "schedule_at": schedule_at}

        return await self.store.run(unit)

    async def pause(self, account: Account, campaign_id: int) -> dict[str, Any]:
        return await self._move(account, campaign_id, (rules.C_RUNNING, rules.C_SCHEDULED), rules.C_PAUSED)

    async def resume(self, account: Account, campaign_id: int) -> dict[str, Any]:
        return await self._move(account, campaign_id, (rules.C_PAUSED,), rules.C_RUNNING)

    async def _move(self, account: Account, campaign_id: int, sources: tuple[str, ...], target: str) -> dict[str, Any]:
        async def unit(tx: Tx) -> None:
            c = await q.campaign(tx, account.id, campaign_id, lock=True)
            if c is None:
                raise NotFound(f"No campaign {campaign_id}", code="campaign_not_found")
            if c["status"] not in sources:
                raise Conflict(f"The campaign is {c['status']}", code="campaign_not_" + sources[0].replace(" ", "_"))
            await q.update_campaign(tx, campaign_id, {"status": target})
            tx.notify("campaigns")

        await self.store.run(unit)
        return await self.get(account, campaign_id)

    async def stop(self, account: Account, campaign_id: int, *, missing_ok: bool = False,
                   quiet: bool = False) -> dict[str, Any]:
        """Numbers not sent yet end terminated and what was held for them goes
        back; texts already out still settle; calls in progress are ended
        (terminated, reason stopped: here at once, in other processes by their
        sender's next round, ``end_stopped_calls``) and settle what they cost."""
        async def unit(tx: Tx) -> None:
            c = await q.campaign(tx, account.id, campaign_id, lock=True)
            if c is None:
                raise NotFound(f"No campaign {campaign_id}", code="campaign_not_found")
            if c["status"] not in rules.ACTIVE:
                if quiet:
                    return
                raise Conflict(f"The campaign is {c['status']}", code="campaign_not_active")
            held = await q.terminate_scheduled(tx, campaign_id)
            await _release(tx, account.id, c, held, "stopped")
            await q.update_campaign(tx, campaign_id, {"status": rules.C_TERMINATED})

        await self.store.run(unit)
        await self.end_stopped_calls()
        return await self.get(account, campaign_id)

    async def end_stopped_calls(self) -> int:
        """End this process's calls that belong to stopped campaigns; how many."""
        if self.hang_up is None or self.live_calls is None or not self.live_calls():
            return 0
        ids = await self.store.read(q.stopped_calls)
        return self.hang_up(ids) if ids else 0

    # --- summary ---

    async def summary(self, account: Account, campaign_id: int) -> dict[str, Any]:
        camp = await self.get(account, campaign_id)
        counts = await self.store.read(lambda tx: q.count_by_status(tx, campaign_id))
        by_status = {s: counts.get(s, (0, 0, 0))[0] for s in rules.NUMBER_STATUSES}
        consumed = sum(v[1] for v in counts.values())
        out = {
            "campaign_id": campaign_id, "name": camp["name"], "status": camp["status"],
            "numbers": sum(by_status.values()), "by_status": by_status,
            "credit_consumed": display(consumed), "credits_on_hold": display(camp["held_units"]),
        }
        if "PHONE" in camp["services"]:
            # seconds of calls (each rounded up, as the numbers show them), by status and in all
            out["duration_by_status"] = {s: counts.get(s, (0, 0, 0))[2] for s in rules.FINAL_NUMBER}
            out["duration"] = sum(v[2] for v in counts.values())
        return out

    # --- the worker's side: sending and settling ---

    async def send_due(self, campaign: dict[str, Any], limit: int, accounts: Any) -> int:
        """Send what the campaign's pace allows now, up to ``limit`` of its
        scheduled numbers; how many were taken. The pace is the campaign's
        row (paced_until_us), shared by every worker process: ``campaign`` is
        the row as this round read it, and taking a share is one conditional
        UPDATE in the transaction that claims the numbers."""
        cid = campaign["id"]
        services = campaign["services"].split(",")
        capacity = self.call_capacity() if "PHONE" in services and self.call_capacity is not None else None
        if capacity:
            # calls are paced by the lines too: no more out at once than the channels can hold,
            # so a stop finds them in progress (and ends them) rather than queued
            out = await self.store.read(lambda tx: q.running_calls(tx, cid))
            limit = min(limit, max(0, capacity - out))
            if limit <= 0:
                return 0
        rate = self.rate_of(campaign)
        now_us = time.time_ns() // 1000
        limit, horizon = rules.pace_share(campaign.get("paced_until_us") or 0, now_us, rate, limit)
        if limit <= 0:
            return 0

        async def claim(tx: Tx) -> list[dict[str, Any]]:
            # the campaign's row first (the UPDATE locks it), as begin and stop lock it: no deadlock
            cost = rules.pace_cost_us(limit, rate)
            if not await q.take_pace(tx, cid, now_us, cost, horizon):
                return []  # another process took this share (or the campaign stopped) meanwhile
            rows = await q.claim_numbers(tx, cid, limit, now_ms(), LEASE_MS)
            if len(rows) < limit:
                await q.give_back_pace(tx, cid, cost - rules.pace_cost_us(len(rows), rate))
            return rows

        claimed = await self.store.run(claim)
        if not claimed:
            return 0
        account = await accounts.get(campaign["account_id"])
        text = campaign["run_message"] or campaign["message"] or ""
        usable = json.loads(campaign["usable_tags"])
        bodies = [rules.render(text, json.loads(n["tags"]), usable) if "{" in text else text for n in claimed]
        # one request (one transaction) per SEND_BATCH numbers, each with its own text
        await asyncio.gather(*(
            self._send_group(account, campaign, bodies[i:i + SEND_BATCH], claimed[i:i + SEND_BATCH])
            for i in range(0, len(claimed), SEND_BATCH)
        ))
        return len(claimed)

    async def _send_group(self, account: Account, campaign: dict[str, Any], bodies: list[str],
                          rows: list[dict[str, Any]]) -> None:
        cid = campaign["id"]
        ids = [r["id"] for r in rows]

        async def prepay(tx: Tx) -> None:
            # the campaign's row first, as begin and stop lock it: no deadlock
            await tx.fetchval("SELECT held FROM campaigns WHERE id = ?" + _lock(tx), cid)
            held, _ = await _take_holds(tx, ids)
            await _release(tx, account.id, campaign, held, "sent", kind="release")

        async def stored(tx: Tx, recipients: list[Recipient]) -> None:
            marks = []
            for row, r in zip(rows, recipients):
                if r.message_id is not None and (r.state != "rejected" or both):
                    # SMS,PHONE: a refused call (final, free) still settles, so its text's cost is counted
                    marks.append((r.message_id, rules.RUNNING, None, row["id"]))
                else:
                    marks.append((r.message_id, rules.FAILED, r.error or r.error_code, row["id"]))
            await q.mark_sent(tx, marks)

        async def sms_stored(tx: Tx, recipients: list[Recipient]) -> None:
            await q.mark_sms(tx, [(r.message_id, row["id"]) for row, r in zip(rows, recipients)])

        async def still_scheduled(tx: Tx) -> None:
            # the text went first and took the holds; the call goes unless stopped meanwhile
            await tx.fetchval("SELECT held FROM campaigns WHERE id = ?" + _lock(tx), cid)
            await _take_holds(tx, ids)

        services = campaign["services"].split(",")
        phone = "PHONE" in services
        both = phone and "SMS" in services
        requests = []
        if "SMS" in services:
            requests.append(SendRequest(
                recipients=[r["number"] for r in rows], texts=bodies, sender=campaign["sender"],
                meta={"campaign_id": cid}, prepay=prepay, stored=sms_stored if phone else stored,
            ))
        if phone:
            vo = VoiceOptions(voice=campaign["voice"] or calls.DEFAULT_VOICE,
                              length_factor=float(campaign["length_factor"] or 1.0), audio_id=campaign["run_audio"])
            requests.append(SendRequest(
                recipients=[r["number"] for r in rows], texts=None if vo.audio_id else bodies,
                sender=_caller_id(campaign["sender"], account.region), channel="voice", voice=vo,
                meta={"campaign_id": cid}, prepay=still_scheduled if requests else prepay, stored=stored,
            ))
        try:
            for req in requests:
                await self.messaging.send(account, req)
        except _Stale:
            return  # stopped meanwhile: nothing (more) was sent or moved
        except UjumbeError as exc:
            # Nothing was sent (too long, sender refused, no credit): these
            # numbers failed, and what was held for them goes back.
            reason = exc.message

            async def failed(tx: Tx) -> None:
                await tx.fetchval("SELECT held FROM campaigns WHERE id = ?" + _lock(tx), cid)
                held, taken = await _take_holds(tx, ids, strict=False)
                await _release(tx, account.id, campaign, held, "not sent")
                # SMS,PHONE whose text went: the number waits (running) for the text's cost
                texted = await q.texted(tx, taken) if both else set()
                await q.mark_sent(tx, [(None, rules.RUNNING if i in texted else rules.FAILED, reason, i)
                                       for i in taken])

            await self.store.run(failed)

    async def settle_finished(self, limit: int = 5000) -> int:
        """Numbers whose message is final take its outcome and cost."""
        rows = await self.store.read(lambda tx: q.finished_messages(tx, limit))
        if not rows:
            return 0
        marks: list[tuple[str, int, str | None, int | None, str | None, int]] = []
        for r in rows:
            cost = int(r["cost"] or 0) + int(r["sms_cost"] or 0)
            if r["channel"] is None:
                # SMS,PHONE whose call never went: its text's cost, and why (stopped, or the send's refusal)
                status = rules.TERMINATED if r["error"] == "stopped" else rules.FAILED
                marks.append((status, cost, r["error"], None, None, int(r["id"])))
                continue
            if r["channel"] != "voice":
                error = None if r["state"] == "delivered" else r["error_reason"] or r["state"]
                marks.append((rules.outcome(r["state"]), cost, error, None, None, int(r["id"])))
                continue
            status = rules.call_status(r["outcome"], r["state"])
            error = None if status == rules.COMPLETED else r["reason"] or r["error_reason"] or r["state"]
            marks.append((status, cost, error, rules.seconds(r["duration_ms"]), rules.playback_text(r["playback_ms"]),
                          int(r["id"])))
        await self.store.run(lambda tx: q.settle(tx, marks))
        return len(rows)

    async def finish_done(self) -> None:
        """A running campaign with nothing scheduled or out is completed; a
        scheduled one whose time came runs. One transaction per campaign."""
        for c in await self.store.read(q.active_campaigns):
            async def unit(tx: Tx, cid: int = c["id"]) -> None:
                locked = await q.campaign_by_id(tx, cid, lock=True)
                if locked is None:
                    return
                if locked["status"] == rules.C_RUNNING and await q.open_numbers(tx, cid) == 0:
                    if locked["held"]:
                        await _release(tx, locked["account_id"], locked, locked["held"], "left over")
                    await q.update_campaign(tx, cid, {"status": rules.C_COMPLETED})
                elif locked["status"] == rules.C_SCHEDULED and (locked["schedule_at"] or 0) <= now_ms():
                    await q.update_campaign(tx, cid, {"status": rules.C_RUNNING})

            if c["status"] == rules.C_SCHEDULED and (c["schedule_at"] or 0) > now_ms():
                continue
            await self.store.run(unit)

    async def running(self) -> list[dict[str, Any]]:
        return [c for c in await self.store.read(q.active_campaigns) if c["status"] == rules.C_RUNNING]

    def rate_of(self, campaign: dict[str, Any]) -> int:
        return campaign["rate"] or self.default_rate


def _lock(tx: Tx) -> str:
    return " FOR UPDATE" if tx.dialect == "postgres" else ""


async def _take_holds(tx: Tx, ids: Sequence[int], *, strict: bool = True) -> tuple[int, list[int]]:
    """Zero the holds of numbers still scheduled; their sum and ids.
    ``strict``: any not scheduled any more (stopped) undoes the send."""
    total, taken = 0, []
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        rows = await tx.fetch(
            f"SELECT id, held FROM campaign_numbers WHERE id IN ({', '.join('?' for _ in chunk)}) "
            "AND status = 'scheduled'" + (" FOR UPDATE" if tx.dialect == "postgres" else ""),
            *chunk,
        )
        taken.extend(int(r[0]) for r in rows)
        total += sum(int(r[1]) for r in rows)
        if rows:
            await tx.execute(
                f"UPDATE campaign_numbers SET held = 0 WHERE id IN ({', '.join('?' for _ in rows)})",
                *[r[0] for r in rows],
            )
    if strict and len(taken) != len(ids):
        raise _Stale()
    return total, taken


async def _release(tx: Tx, account_id: str, campaign: dict[str, Any], amount: int, why: str,
                   kind: str = "release") -> None:
    if not amount:
        return
    await q.add_ledger(tx, account_id, kind, amount, campaign["id"],
                       f"{display(amount)} credits released from {campaign['name']} campaign ({why})")
    await tx.execute("UPDATE campaigns SET held = held - ? WHERE id = ?", amount, campaign["id"])


def _caller_id(sender: str | None, region: str) -> str | None:
    """A campaign's sender as a call's caller id: a number, else none (an
    alphanumeric SMS sender id cannot be dialled from)."""
    if not sender:
        return None
    try:
        return numbers.normalize(sender, region).e164
    except numbers.InvalidNumber:
        return None


def _campaign_out(c: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": c["id"], "name": c["name"], "description": c["description"], "services": c["services"],
        "message": c["message"], "sender": c["sender"], "status": c["status"], "rate": c["rate"],
        "audio": c["audio"], "voice": c["voice"],
        "length_factor": float(c["length_factor"]) if c["length_factor"] else None, "run_audio": c["run_audio"],
        "usable_tags": json.loads(c["usable_tags"]), "schedule_at": c["schedule_at"],
        "held_units": c["held"], "created_at": c["created_at"], "updated_at": c["updated_at"],
    }


def _number_out(n: dict[str, Any], campaign_name: str) -> dict[str, Any]:
    return {
        "id": n["id"], "campaign_id": n["campaign_id"], "campaign": campaign_name, "number": n["number"],
        "network": n["network"], "tags": json.loads(n["tags"]), "status": n["status"],
        "credit_consumed_units": n["credit_consumed"], "held_units": n["held"], "message_id": n["message_id"],
        "error": n["error"], "duration": n["duration"],
        "playback": float(n["playback"]) if n["playback"] not in (None, "") else None,
        "sms_message_id": n.get("sms_message_id"),
    }


# --- jobs: contact imports and reports, run by the job worker ---

REPORT_COLUMNS = ("id", "number", "campaign", "status", "credit_consumed", "duration", "playback", "message_id", "error")
REPORT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


class Jobs:
    def __init__(self, store: Store, campaigns: Campaigns, accounts: Any) -> None:
        self.store = store
        self.campaigns = campaigns
        self.accounts = accounts

    async def start_import(self, account: Account, campaign_id: int, filename: str, data: bytes) -> dict[str, Any]:
        await self.campaigns.get(account, campaign_id)
        if not data:
            raise Invalid("The file is empty", code="invalid_file")
        if len(data) > MAX_FILE_BYTES:
            raise Invalid(f"The file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB", code="file_too_large")
        if not filename.lower().endswith((".xlsx", ".csv", ".txt")) and data[:2] != b"PK":
            raise Invalid(f"'{filename}' is neither .xlsx nor .csv", code="invalid_file")

        async def unit(tx: Tx) -> int:
            jid = await q.insert_job(tx, account.id, "import", campaign_id, {"filename": filename})
            await q.put_file(tx, jid, "input", "application/octet-stream", data)
            tx.notify("jobs")
            return jid

        return await self.get(account, await self.store.run(unit))

    async def start_report(self, account: Account, campaign_id: int) -> dict[str, Any]:
        await self.campaigns.get(account, campaign_id)

        async def unit(tx: Tx) -> int:
            jid = await q.insert_job(tx, account.id, "report", campaign_id, {})
            tx.notify("jobs")
            return jid

        return await self.get(account, await self.store.run(unit))

    async def get(self, account: Account, job_id: int) -> dict[str, Any]:
        found = await self.store.read(lambda tx: q.job(tx, job_id, account.id))
        if found is None:
            raise NotFound(f"No job {job_id}", code="job_not_found")
        return job_out(found)

    async def preview(self, account: Account, job_id: int, rows: int = 5) -> list[dict[str, Any]]:
        """The first ``rows`` rows of an import job's file, read as the import
        reads them (row number, number cell, tags), for the dashboard to show."""
        job = await self.get(account, job_id)
        if job["kind"] != "import":
            raise Invalid("Only import jobs have an uploaded file", code="not_an_import")
        found = await self.store.read(lambda tx: q.get_file(tx, job_id, "input"))
        if found is None:
            return []
        data = found[1]

        def first() -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = []
            for n, cell, tags in read_contacts("", data):  # no name: xlsx by its signature, else csv
                out.append({"row": n, "number": rules.number_text(cell), "tags": {k: str(v) for k, v in tags.items()}})
                if len(out) >= rows:
                    break
            return out

        try:
            return await asyncio.to_thread(first)
        except Invalid:
            return []  # unreadable: the import job says why

    async def get_any(self, job_id: int) -> dict[str, Any]:
        """For the operator's CLI: any account's job."""
        found = await self.store.read(lambda tx: q.job(tx, job_id))
        if found is None:
            raise NotFound(f"No job {job_id}", code="job_not_found")
        return job_out(found)

    async def wait(self, account: Account, job_id: int, timeout_s: float) -> dict[str, Any]:
        """The job once done or failed, or as it is after ``timeout_s``."""
        # Polled, not a store listener: listeners are never removed, and one per
        # wait would pile up in a long-running server.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            job = await self.get(account, job_id)
            if job["status"] in ("done", "failed") or loop.time() >= deadline:
                return job
            await asyncio.sleep(min(0.1, max(0.01, deadline - loop.time())))

    async def file(self, account: Account, job_id: int, fmt: str) -> tuple[str, bytes, str]:
        job = await self.get(account, job_id)
        if job["kind"] != "report":
            raise Invalid("Only report jobs have files", code="not_a_report")
        if job["status"] != "done":
            raise Conflict(f"The report is {job['status']}; wait for it (GET /v1/jobs/{job_id})", code="report_not_ready")
        if fmt not in REPORT_TYPES:
            raise Invalid("The format is csv or xlsx", code="invalid_format")
        found = await self.store.read(lambda tx: q.get_file(tx, job_id, f"report.{fmt}"))
        if found is None:
            raise NotFound("The report file is gone", code="report_not_found")
        return found[0], found[1], f"campaign-{job['campaign_id']}-report.{fmt}"

    async def current_report(self, account: Account, campaign_id: int) -> dict[str, Any] | None:
        """The latest report if it is done and nothing changed since it was
        asked for (so a download asked for again does not write it again)."""
        await self.campaigns.get(account, campaign_id)

        async def unit(tx: Tx) -> dict[str, Any] | None:
            found = await q.latest_report(tx, campaign_id)
            if found is None or found["status"] != "done":
                return None
            return found if await q.last_change(tx, campaign_id) < found["created_at"] else None

        found = await self.store.read(unit)
        return None if found is None else job_out(found)

    # -- TingTing's test/voice: a rendered sample kept for an hour behind an unguessable URL --

    async def voice_test(self, account: Account, text: str, *, voice: str | None, length_factor: object
                         ) -> dict[str, Any]:
        """Say ``text`` (services/speech) and keep the WAV as a finished job's
        file, so any process can serve it; its id, token and length."""
        speech = self.campaigns.speech
        if speech is None:
            raise ChannelUnavailable("Text-to-speech is not available on this server: voices cannot be tested",
                                     code="tts_unavailable")
        fields = self.campaigns._voice_fields(voice, length_factor)
        if not text or not str(text).strip():
            raise Invalid("Give the message to say", code="missing_text")
        voice_name = fields.get("voice") or calls.DEFAULT_VOICE
        factor = float(fields.get("length_factor") or 1.0)
        pcm = await speech.render(str(text), voice=voice_name, length_factor=factor)
        wav = speech.wav(pcm)
        token = secrets.token_urlsafe(24)
        seconds = round(len(pcm) / 16_000, 3)  # PCM16 at 8 kHz

        async def unit(tx: Tx) -> int:
            # a test's WAV is kept an hour: the expired ones go as new ones come
            await q.purge_jobs(tx, "voice_test", now_ms() - VOICE_TEST_TTL_MS)
            jid = await q.insert_job(tx, account.id, "voice_test", None,
                                     {"token": token, "voice": voice_name, "length_factor": factor}, status="done")
            await q.put_file(tx, jid, "voice.wav", "audio/wav", wav)
            return jid

        jid = await self.store.run(unit)
        return {"id": jid, "token": token, "voice": voice_name, "length_factor": factor, "seconds": seconds}

    async def voice_test_audio(self, job_id: int, token: str) -> bytes:
        """The WAV of a voice test, for whoever has its URL, for an hour."""
        job = await self.store.read(lambda tx: q.job(tx, job_id))
        params = json.loads(job["params"] or "{}") if job is not None and job["kind"] == "voice_test" else {}
        fresh = job is not None and now_ms() - job["created_at"] < VOICE_TEST_TTL_MS
        if not fresh or not hmac.compare_digest(str(params.get("token", "")), token):
            raise NotFound("No such voice test (they are kept for an hour)", code="voice_test_not_found")
        found = await self.store.read(lambda tx: q.get_file(tx, job_id, "voice.wav"))
        if found is None:
            raise NotFound("No such voice test (they are kept for an hour)", code="voice_test_not_found")
        return found[1]

    # -- the worker's side --

    async def run_next(self) -> bool:
        """Run one due job; False when there was none."""
        job = await self.store.run(lambda tx: q.claim_job(tx, now_ms(), 10 * 60_000))
        if job is None:
            return False
        try:
            if job["kind"] == "import":
                result = await self._import(job)
            else:
                result = await self._report(job)
            await self._finish(job["id"], {"status": "done", "result": json.dumps(result), "lease_until": None})
        except UjumbeError as exc:
            await self._finish(job["id"], {"status": "failed", "error": exc.message, "lease_until": None})
        except Exception as exc:  # a job that cannot run must not be retried forever
            log.exception("job %s failed", job["id"])
            await self._finish(job["id"], {"status": "failed", "error": f"internal error: {type(exc).__name__}",
                                           "lease_until": None})
        return True

    async def _finish(self, job_id: int, fields: dict[str, Any]) -> None:
        async def unit(tx: Tx) -> None:
            await q.update_job(tx, job_id, fields)

        await self.store.run(unit)

    async def _progress(self, job_id: int, done: int, total: int) -> None:
        async def unit(tx: Tx) -> None:
            await q.update_job(tx, job_id, {"done": done, "total": total, "lease_until": now_ms() + 10 * 60_000})

        await self.store.run(unit)

    async def _import(self, job: dict[str, Any]) -> dict[str, Any]:
        account = await self.accounts.get(job["account_id"])
        params = json.loads(job["params"] or "{}")
        found = await self.store.read(lambda tx: q.get_file(tx, job["id"], "input"))
        if found is None:
            raise Invalid("The uploaded file is gone", code="invalid_file")
        data = found[1]

        def parse() -> list[tuple[int, object, dict[str, object]]]:
            rows = []
            for row in read_contacts(params.get("filename", ""), data):
                rows.append(row)
                if len(rows) > MAX_ROWS:
                    raise Invalid(f"The file has more than {MAX_ROWS} rows", code="too_many_rows")
            return rows

        rows = await asyncio.to_thread(parse)
        cid = job["campaign_id"]
        camp = await self.campaigns.get(account, cid)
        seen = await self.store.read(lambda tx: q.existing_numbers(tx, cid))
        errors: list[RowError] = []
        added = 0
        await self._progress(job["id"], 0, len(rows))
        for i in range(0, len(rows), IMPORT_CHUNK):
            chunk = rows[i:i + IMPORT_CHUNK]
            good, bad = await asyncio.to_thread(normalize_rows, chunk, account.region, seen)
            errors.extend(bad)

            async def unit(tx: Tx, good: list[tuple[str, str | None, str]] = good) -> int:
                n = await q.insert_numbers(tx, cid, account.id, good)
                await self.campaigns._add_tags(tx, camp, good)
                return n

            added += await self.store.run(unit)
            camp = await self.campaigns.get(account, cid)
            await self._progress(job["id"], i + len(chunk), len(rows))
        return {"rows": len(rows), "imported": added, "invalid": len(errors),
                "errors": [e.as_dict() for e in errors[:1000]]}

    async def _report(self, job: dict[str, Any]) -> dict[str, Any]:
        account = await self.accounts.get(job["account_id"])
        cid = job["campaign_id"]
        camp = await self.campaigns.get(account, cid)
        tags = camp["usable_tags"]
        total = int(await self.store.read(lambda tx: tx.fetchval(
            "SELECT count(*) FROM campaign_numbers WHERE campaign_id = ?", cid)))
        # SMS,PHONE: message_id is the call, sms_message_id the text
        both = camp["services"] == "SMS,PHONE"
        header = [*REPORT_COLUMNS, *(["sms_message_id"] if both else []), *tags]
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(header)
        sheet = SheetWriter("report")
        sheet.append_rows([header])

        def write(page: list[dict[str, Any]]) -> int:
            # in a thread, a page at a time: the loop it would hold also paces RTP and sends
            rows = []
            for n in page:
                t = json.loads(n["tags"])
                playback = float(n["playback"]) if n["playback"] not in (None, "") else None
                extra = [n["sms_message_id"]] if both else []
                rows.append([n["id"], n["number"], camp["name"], n["status"], display(n["credit_consumed"]),
                             n["duration"], playback, n["message_id"], n["error"], *extra, *(t.get(k) for k in tags)])
            w.writerows(rows)
            sheet.append_rows(rows)
            return len(rows)

        done = 0
        after = 0
        while True:
            page = await self.store.read(lambda tx, a=after: q.numbers_page(tx, cid, after=a, limit=5000))
            if not page:
                break
            done += await asyncio.to_thread(write, page)
            after = page[-1]["id"]
            await self._progress(job["id"], done, total)
        csv_bytes = out.getvalue().encode("utf-8")
        xlsx_bytes = await asyncio.to_thread(sheet.close)

        async def unit(tx: Tx) -> None:
            if not await q.job_exists(tx, job["id"]):
                return  # the campaign was deleted meanwhile, and its jobs with it: no file without its record
            await q.put_file(tx, job["id"], "report.csv", REPORT_TYPES["csv"], csv_bytes)
            await q.put_file(tx, job["id"], "report.xlsx", REPORT_TYPES["xlsx"], xlsx_bytes)
            await q.update_job(tx, job["id"], {"done": total, "total": total})
            # only the latest report is served (current_report): the older ones and their files go
            await q.purge_campaign_jobs(tx, cid, reports_before=job["id"])

        await self.store.run(unit)
        return {"rows": done, "files": ["csv", "xlsx"]}


def job_out(j: dict[str, Any]) -> dict[str, Any]:
    total, done = j["total"] or 0, j["done"] or 0
    if j["status"] == "done":
        progress = 100.0
    else:
        progress = round(100.0 * done / total, 1) if total else 0.0
    return {
        "id": j["id"], "kind": j["kind"], "campaign_id": j["campaign_id"], "status": j["status"],
        "progress": progress, "done": done, "total": total,
        "result": json.loads(j["result"]) if j["result"] else None, "error": j["error"],
        "created_at": j["created_at"], "updated_at": j["updated_at"],
    }
