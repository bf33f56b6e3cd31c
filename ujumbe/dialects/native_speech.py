"""Native ``/v1`` endpoints for speech: audio files for calls (upload, list,
download as WAV, delete) and the voices, with a test that says a text.
They join the native API (same ``api`` object, so they are in
``/openapi.json``); importing this module registers them (docs/speech.md)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from ujumbe.core import speech as rules
from ujumbe.core.errors import Invalid, TooLarge
from ujumbe.dialects.native import account_of, int_param, iso, route
from ujumbe.http.common import JSON, path_id, read_body, read_json, services

# What a raw upload may say it is (the file's own bytes decide).
RAW_TYPES = ("audio/mpeg", "audio/mp3", "audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave", "audio/flac",
             "audio/x-flac", "application/octet-stream")
# A multipart body carries the file and a little around it.
MULTIPART_OVERHEAD = 64 * 1024


class AudioOut(msgspec.Struct):
    id: int
    name: str
    content_type: str  # the uploaded file's format
    seconds: float  # how long it plays
    size: int  # bytes uploaded
    created_at: str


class AudioPage(msgspec.Struct):
    total: int
    audio: list[AudioOut]


class VoiceOut(msgspec.Struct):
    name: str
    description: str
    default: bool


class Voices(msgspec.Struct):
    voices: list[VoiceOut]
    languages: dict[str, str]
    length_factor: dict[str, float]


class VoiceTestBody(msgspec.Struct, forbid_unknown_fields=True):
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=rules.MAX_TEXT)]
    voice: str = rules.DEFAULT_VOICE
    length_factor: float | str = 1.0  # a number, or a string of one as TingTing sends it
    language: str = rules.DEFAULT_LANGUAGE
    code: Annotated[str, msgspec.Meta(max_length=rules.MAX_CODE)] | None = None


def audio_out(a: dict[str, object]) -> AudioOut:
    return AudioOut(id=a["id"], name=a["name"], content_type=a["content_type"], seconds=a["seconds"],  # type: ignore[arg-type]
                    size=a["size"], created_at=iso(a["created_at"]) or "")  # type: ignore[arg-type]


def _too_large() -> TooLarge:
    return TooLarge(f"The audio file is larger than {rules.MAX_AUDIO_BYTES // (1024 * 1024)} MB, the most accepted",
                    code="audio_too_large")


def _wav(pcm: bytes, name: str) -> Response:
    return Response(rules.wav(pcm), media_type="audio/wav",
                    headers={"content-disposition": f'attachment; filename="{name}"'})


_FILE = {"type": "string", "format": "binary"}
UPLOAD = {
    "multipart/form-data": {"type": "object", "properties": {"file": _FILE, "name": {"type": "string"}},
                            "required": ["file"]},
    **{media: _FILE for media in ("audio/mpeg", "audio/wav", "application/octet-stream")},
}


async def uploaded_audio(request: Request) -> tuple[bytes, str, str]:
    """(file, name, content type) of an upload: multipart (field ``file``,
    optional field ``name``) or the raw file with an audio Content-Type
    (its name in ``?name=``)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        await read_body(request, rules.MAX_AUDIO_BYTES + MULTIPART_OVERHEAD, _too_large)
        try:
            form = await request.form(max_files=1, max_fields=10, max_part_size=64 * 1024)
        except Exception as exc:  # the parser's own errors: a malformed body
            raise Invalid(f"The multipart body could not be read: {exc}", code="invalid_upload") from None
        item = form.get("file")
        if item is None or isinstance(item, str):
            raise Invalid("No file in the field 'file'", code="missing_file")
        data = await item.read()
        if len(data) > rules.MAX_AUDIO_BYTES:
            raise _too_large()
        name = form.get("name")
        return data, name if isinstance(name, str) and name.strip() else (item.filename or ""), item.content_type or ""
    if ctype not in RAW_TYPES:
        raise Invalid(f"Send the audio file ({rules.ACCEPTED_AUDIO}) as multipart/form-data in the field 'file', "
                      "or as the body with Content-Type audio/mpeg, audio/wav or audio/flac", code="invalid_upload")
    data = await read_body(request, rules.MAX_AUDIO_BYTES, _too_large)
    return data, request.query_params.get("name", ""), ctype


@route("POST", "/v1/audio", summary=f"Upload an audio file for calls ({rules.ACCEPTED_AUDIO}, at most "
       f"{rules.MAX_AUDIO_BYTES // (1024 * 1024)} MB and {rules.minutes(rules.MAX_AUDIO_SECONDS)}): multipart field "
       "'file', or the raw file with its Content-Type. Decoded once to 8 kHz telephone audio",
       tag="speech", upload=UPLOAD, response=AudioOut, status=201, query={"name": "a name for a raw upload"})
async def upload_audio(request: Request) -> Response:
    account = await account_of(request)
    data, name, ctype = await uploaded_audio(request)
    saved = await services(request).speech.save_audio(account.id, data, name, ctype)
    return JSON(audio_out(saved), 201)


@route("GET", "/v1/audio", summary="This account's audio files, newest first", tag="speech", response=AudioPage,
       query={"offset": "skip this many", "limit": "at most this many (default 50)"})
async def list_audio(request: Request) -> Response:
    account = await account_of(request)
    offset = int_param(request, "offset", 0, low=0) or 0
    limit = int_param(request, "limit", 50, high=500) or 50
    total, items = await services(request).speech.list_audio(account.id, offset=offset, limit=limit)
    return JSON(AudioPage(total, [audio_out(a) for a in items]))


def _audio_id(request: Request) -> int:
    return path_id(request, "audio file", "audio_not_found")


@route("GET", "/v1/audio/{id:id}", summary="One audio file", tag="speech", response=AudioOut)
async def get_audio(request: Request) -> Response:
    account = await account_of(request)
    return JSON(audio_out(await services(request).speech.get_audio(account.id, _audio_id(request))))


@route("GET", "/v1/audio/{id:id}/wav", summary="An audio file as calls play it: 8 kHz mono 16-bit WAV",
       tag="speech", produces="audio/wav")
async def download_audio(request: Request) -> Response:
    account = await account_of(request)
    audio_id = _audio_id(request)
    pcm = await services(request).speech.load_audio(account.id, audio_id)
    return _wav(pcm, f"audio-{audio_id}.wav")


@route("DELETE", "/v1/audio/{id:id}", summary="Delete an audio file", tag="speech", status=204)
async def delete_audio(request: Request) -> Response:
    account = await account_of(request)
    await services(request).speech.delete_audio(account.id, _audio_id(request))
    return Response(status_code=204)


@route("GET", "/v1/voices", summary="The voices, languages and length_factor range text is said with",
       tag="speech", response=Voices)
async def list_voices(request: Request) -> Response:
    await account_of(request)
    return JSON(Voices(
        voices=[VoiceOut(name, about, name == rules.DEFAULT_VOICE) for name, about in rules.VOICES.items()],
        languages=rules.LANGUAGES,
        length_factor={"min": rules.MIN_LENGTH_FACTOR, "max": rules.MAX_LENGTH_FACTOR, "default": 1.0},
    ))


@route("POST", "/v1/voice/test", summary="Say a text in a voice: answers the speech as calls play it "
       "(8 kHz mono 16-bit WAV). length_factor scales its length (2.0: twice as slow); code, a one-time code in "
       "the text, is said digit by digit, twice", tag="speech", body=VoiceTestBody, produces="audio/wav")
async def voice_test(request: Request) -> Response:
    await account_of(request)
    body = await read_json(request, VoiceTestBody)
    pcm = await services(request).speech.render(body.text, voice=body.voice, length_factor=body.length_factor,
                                                language=body.language, code=body.code)
    return _wav(pcm, "voice-test.wav")
