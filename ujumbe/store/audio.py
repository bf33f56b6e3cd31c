"""Queries on audio files (services/speech.py). Every one is by account:
an account sees only its own files."""

from __future__ import annotations

from typing import Any

from ujumbe.store.accounts import as_dict
from ujumbe.store.base import Tx

_COLUMNS = "id, account_id, name, content_type, seconds, size, created_at"  # all but the samples


async def insert_audio(tx: Tx, row: dict[str, Any]) -> int:
    return await tx.fetchval(
        "INSERT INTO audio_files (account_id, name, content_type, seconds, size, pcm, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        row["account_id"], row["name"], row["content_type"], row["seconds"], row["size"], row["pcm"],
        row["created_at"],
    )


async def get_audio(tx: Tx, account_id: str, audio_id: int) -> dict[str, Any] | None:
    return as_dict(await tx.fetchrow(
        f"SELECT {_COLUMNS} FROM audio_files WHERE id = ? AND account_id = ?", audio_id, account_id))


async def audio_pcm(tx: Tx, account_id: str, audio_id: int) -> bytes | None:
    pcm = await tx.fetchval("SELECT pcm FROM audio_files WHERE id = ? AND account_id = ?", audio_id, account_id)
    return None if pcm is None else bytes(pcm)


async def count_audio(tx: Tx, account_id: str) -> int:
    return int(await tx.fetchval("SELECT count(*) FROM audio_files WHERE account_id = ?", account_id))


async def list_audio(tx: Tx, account_id: str, offset: int, limit: int) -> list[dict[str, Any]]:
    rows = await tx.fetch(
        f"SELECT {_COLUMNS} FROM audio_files WHERE account_id = ? ORDER BY id DESC LIMIT ? OFFSET ?",
        account_id, limit, offset,
    )
    return [d for r in rows if (d := as_dict(r)) is not None]


async def delete_audio(tx: Tx, account_id: str, audio_id: int) -> bool:
    return await tx.fetchrow(
        "DELETE FROM audio_files WHERE id = ? AND account_id = ? RETURNING id", audio_id, account_id) is not None
