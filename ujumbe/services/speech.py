"""Speech for calls: text said by a text-to-speech engine, and the audio
files clients upload, decoded once and kept as telephone audio.

Audio here is always PCM16 little-endian mono at 8 kHz (ujumbe.core.speech),
what the voice channel encodes to G.711 as it plays. Uploads are decoded and
resampled once, when saved; a call plays the stored samples as they are.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from ujumbe.core import speech as rules
from ujumbe.core.errors import ChannelUnavailable, Invalid, NotFound, TooLarge
from ujumbe.store import Store, Tx, now_ms
from ujumbe.store import audio as q

MAX_NAME = 200  # characters of an audio file's name
CACHE_BYTES = 32 * 1024 * 1024  # rendered speech kept: about 35 minutes of audio


class TextToSpeech(Protocol):
    """A text-to-speech engine (ujumbe.channels.speech). ``text`` is SSML: a
    ``<speak>`` element holding text and ``<break time="Nms"/>`` only. The
    answer is PCM16 LE mono at 8 kHz. Blocking: called in a thread."""

    name: str

    def render(self, text: str, *, voice: str, rate_wpm: int, language: str) -> bytes: ...


Decoder = Callable[[bytes], Any]  # bytes -> channels.speech.decode.Decoded, or raises BadAudio


def _invalid(exc: ValueError) -> Invalid:
    return Invalid(str(exc), code=getattr(exc, "code", "invalid_request"))


def audio_json(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "content_type": row["content_type"],
            "seconds": round(row["seconds"], 3), "size": row["size"], "created_at": row["created_at"]}


class Speech:
    def __init__(self, store: Store, engine: TextToSpeech, decoder: Decoder, *,
                 cache_bytes: int = CACHE_BYTES) -> None:
        self.store = store
        self.engine = engine
        self.decoder = decoder
        self._cache: OrderedDict[tuple[str, str, int, str], bytes] = OrderedDict()
        self._cache_bytes = 0
        self._cache_limit = cache_bytes
        self._lock = asyncio.Lock()  # the engine says one text at a time anyway

    # --- text to speech ---

    async def render(self, text: str, voice: str = rules.DEFAULT_VOICE, length_factor: float | str = 1.0,
                     language: str = rules.DEFAULT_LANGUAGE, code: str | None = None, keep: bool = True) -> bytes:
        """``text`` said in ``voice`` as PCM16 LE mono 8 kHz. ``length_factor``
        scales its length (2.0: twice as slow); ``code``, a one-time code in
        the text, is said digit by digit, twice; ``keep=False`` (or a code)
        keeps the speech out of the cache. Bad arguments raise
        ``Invalid`` naming what is accepted."""
        try:
            voice = rules.check_voice(voice)
            wpm = rules.rate_for(length_factor)
            parts = rules.speakable(text, language, code)
            rules.check_duration(parts, wpm)
            ssml = rules.ssml(parts)
        except rules.SpeechError as exc:
            raise _invalid(exc) from None
        key = (ssml, voice, wpm, language)
        if (pcm := self._cached(key)) is not None:
            return pcm
        async with self._lock:
            if (pcm := self._cached(key)) is not None:  # said while we waited
                return pcm
            try:
                pcm = await asyncio.to_thread(self.engine.render, ssml, voice=voice, rate_wpm=wpm, language=language)
            except (OSError, ImportError, RuntimeError) as exc:
                raise ChannelUnavailable(f"Text-to-speech is not available on this server: {exc}",
                                         code="tts_unavailable") from None
        if keep and not code:  # a one-time code is said once: never kept
            self._keep(key, pcm)
        return pcm

    def _cached(self, key: tuple[str, str, int, str]) -> bytes | None:
        pcm = self._cache.get(key)
        if pcm is not None:
            self._cache.move_to_end(key)
        return pcm

    def _keep(self, key: tuple[str, str, int, str], pcm: bytes) -> None:
        if len(pcm) > self._cache_limit // 4 or key in self._cache:
            return
        self._cache[key] = pcm
        self._cache_bytes += len(pcm)
        while self._cache_bytes > self._cache_limit:
            _, old = self._cache.popitem(last=False)
            self._cache_bytes -= len(old)

    # --- audio files ---

    async def save_audio(self, account_id: str, data: bytes, filename: str = "", content_type: str = "") -> dict[str, Any]:
        """Decode an uploaded MP3, WAV or FLAC once and keep it as 8 kHz audio.
        ``content_type`` is the client's word; the stored one is what the
        file is. Too large, too long or not audio raise with the limit or
        the formats accepted."""
        if len(data) > rules.MAX_AUDIO_BYTES:
            raise TooLarge(f"The audio file is larger than {rules.MAX_AUDIO_BYTES // (1024 * 1024)} MB, "
                           "the most accepted", code="audio_too_large")
        if not data:
            raise Invalid(f"The audio file is empty; send {rules.ACCEPTED_AUDIO}", code="invalid_audio")
        try:
            decoded = await asyncio.to_thread(self.decoder, data)
        except ValueError as exc:
            raise _invalid(exc) from None
        name = " ".join((filename or "").split())[:MAX_NAME].replace("\x00", "") or f"audio.{decoded.format}"
        row = {"account_id": account_id, "name": name, "content_type": rules.AUDIO_FORMATS[decoded.format],
               "seconds": decoded.seconds, "size": len(data), "pcm": decoded.pcm, "created_at": now_ms()}
        row["id"] = await self.store.run(lambda tx: q.insert_audio(tx, row))
        return audio_json(row)

    async def load_audio(self, account_id: str, audio_id: int) -> bytes:
        """A stored audio file's 8 kHz PCM16; only its owner's (else ``NotFound``)."""
        pcm = await self.store.read(lambda tx: q.audio_pcm(tx, account_id, audio_id))
        if pcm is None:
            raise _not_found(audio_id)
        return pcm

    async def get_audio(self, account_id: str, audio_id: int) -> dict[str, Any]:
        row = await self.store.read(lambda tx: q.get_audio(tx, account_id, audio_id))
        if row is None:
            raise _not_found(audio_id)
        return audio_json(row)

    async def list_audio(self, account_id: str, *, offset: int = 0, limit: int = 50) -> tuple[int, list[dict[str, Any]]]:
        async def unit(tx: Tx) -> tuple[int, list[dict[str, Any]]]:
            return await q.count_audio(tx, account_id), await q.list_audio(tx, account_id, offset, limit)

        total, rows = await self.store.read(unit)
        return total, [audio_json(r) for r in rows]

    async def delete_audio(self, account_id: str, audio_id: int) -> None:
        if not await self.store.run(lambda tx: q.delete_audio(tx, account_id, audio_id)):
            raise _not_found(audio_id)

    @staticmethod
    def wav(pcm: bytes) -> bytes:
        """8 kHz PCM16 mono in a WAV container (downloads, /v1/voice/test)."""
        return rules.wav(pcm)


def _not_found(audio_id: int) -> NotFound:
    return NotFound(f"No audio file {audio_id}", code="audio_not_found")
