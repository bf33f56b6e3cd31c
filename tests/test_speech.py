"""Speech for calls, both databases: text said by espeak-ng as 8 kHz audio
(voices, length_factor, codes digit by digit), audio files uploaded as MP3
or WAV, decoded once to 8 kHz and downloaded as WAV, each account seeing
only its own, and POST /v1/voice/test."""

from __future__ import annotations

import array
import asyncio
import io
import math
import wave
from pathlib import Path
from typing import Any

import lameenc
import pytest

from tests.conftest import auth, make_account, make_settings
from ujumbe.core.errors import Invalid, NotFound
from ujumbe.runtime import Platform

GREETING = "नमस्कार, टिङ्टिंगमा हजुरलाई स्वागत छ"  # TingTing's sample message


def seconds(pcm: bytes) -> float:
    return len(pcm) / 16000  # PCM16 mono 8 kHz


def rms(pcm: bytes) -> float:
    samples = array.array("h", pcm)
    return math.sqrt(sum(s * s for s in samples) / max(1, len(samples)))


def pauses(pcm: bytes, min_ms: int = 200) -> int:
    """Silences of at least ``min_ms`` between sounds (not at the ends)."""
    frames = [rms(pcm[i:i + 160]) < 100 for i in range(0, len(pcm) - 159, 160)]  # 10 ms each
    runs, quiet, started = 0, 0, False
    for silent in frames:
        if silent:
            quiet += 1
            continue
        if started and quiet * 10 >= min_ms:
            runs += 1
        started, quiet = True, 0
    return runs


def pitch(pcm: bytes) -> float:
    """The median fundamental frequency (Hz) of the voiced 40 ms frames, by autocorrelation."""
    samples = array.array("h", pcm)
    found = []
    for i in range(0, len(samples) - 320, 640):  # every other frame is plenty
        frame = samples[i:i + 320]
        if max(map(abs, frame)) < 2000:
            continue  # silence or a consonant
        lag = max(range(16, 160), key=lambda n: sum(frame[j] * frame[j + n] for j in range(320 - n)))
        found.append(8000 / lag)
    return sorted(found)[len(found) // 2]


def tone(freq: float, rate: int, secs: float, channels: int = 1) -> bytes:
    frames = array.array("h")
    for i in range(int(rate * secs)):
        value = int(8000 * math.sin(2 * math.pi * freq * i / rate))
        frames.extend([value] * channels)
    return frames.tobytes()


def wav_file(rate: int = 44100, channels: int = 2, secs: float = 3.0, width: int = 2) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(tone(440, rate, secs, channels) if width == 2 else b"\x80" * int(rate * secs * channels))
    return buf.getvalue()


def mp3_file(secs: float = 6.0, rate: int = 16000) -> bytes:
    encoder = lameenc.Encoder()
    encoder.set_bit_rate(32)
    encoder.set_in_sample_rate(rate)
    encoder.set_channels(1)
    encoder.set_quality(7)
    return bytes(encoder.encode(tone(440, rate, secs)) + encoder.flush())


def read_wav(data: bytes) -> tuple[wave.Wave_read, bytes]:
    w = wave.open(io.BytesIO(data))
    return w, w.readframes(w.getnframes())


# --- text to speech ---


async def test_speech_asked_not_to_be_kept_stays_out_of_the_cache(platform: Platform) -> None:
    # a verification call's text (its code inside) must not stay in memory after the call
    platform.speech._cache.clear()
    await platform.speech.render("तपाईंको कोड 493817 हो", keep=False)
    assert not platform.speech._cache
    await platform.speech.render("तपाईंको कोड 493817 हो")
    assert len(platform.speech._cache) == 1


async def test_nepali_is_said_as_8khz_audio_twice_as_long_at_length_factor_2(platform: Platform) -> None:
    normal = await platform.speech.render(GREETING)
    slow = await platform.speech.render(GREETING, length_factor=2.0)
    between = await platform.speech.render(GREETING, length_factor="1.4")  # TingTing sends it as a string
    assert len(normal) % 2 == 0 and 1.5 < seconds(normal) < 6  # a sentence, at 8 kHz PCM16
    assert rms(normal) > 500  # speech, not silence
    assert 1.6 < seconds(slow) / seconds(normal) < 2.5
    assert seconds(normal) < seconds(between) < seconds(slow)


async def test_the_three_voices_sound_different(platform: Platform) -> None:
    said = {v: await platform.speech.render(GREETING, voice=v) for v in ("np_rija", "np_prasanna", "np_binod")}
    assert len(set(said.values())) == 3
    # np_rija is a woman's voice: about an octave above the two men's (measured ~210 Hz against ~100-115)
    assert pitch(said["np_rija"]) > 1.5 * max(pitch(said["np_prasanna"]), pitch(said["np_binod"]))
    assert said["np_rija"] == await platform.speech.render(GREETING)  # the default


async def test_a_code_is_said_digit_by_digit_longer_than_the_number_read_whole(platform: Platform) -> None:
    one_by_one = await platform.speech.render("१ २ ३ ४")
    as_code = await platform.speech.render("कोड 1234", code="1234")  # said twice
    whole = platform.speech.engine.render("<speak>१२३४</speak>", voice="np_rija", rate_wpm=175, language="ne")
    assert rms(whole) > 500 and rms(one_by_one) > 500
    assert seconds(one_by_one) > seconds(whole)
    # a pause after each digit but the last; the number read whole has none
    assert pauses(one_by_one) >= 3 and pauses(whole) == 0
    assert pauses(as_code) >= 7 and seconds(as_code) > 2 * seconds(whole)


async def test_many_texts_said_at_once_each_come_out_as_said_alone(platform: Platform) -> None:
    texts = [f"ग्राहक नम्बर {n}, हजुरलाई स्वागत छ" for n in range(12)]
    together = await asyncio.gather(*(platform.speech.render(t, voice="np_binod") for t in texts))
    platform.speech._cache.clear()  # said again by the engine, one at a time
    alone = [await platform.speech.render(t, voice="np_binod") for t in texts]
    # espeak-ng's noise sources make no two renderings the same bytes: compare lengths
    for a, b in zip(together, alone):
        assert seconds(a) == pytest.approx(seconds(b), rel=0.03) and rms(a) > 500
    assert seconds(together[11]) > seconds(together[1])  # "११" is a longer word than "१": nothing mixed up


async def test_bad_speech_arguments_are_refused_with_what_is_accepted(platform: Platform) -> None:
    with pytest.raises(Invalid, match="np_rija, np_prasanna, np_binod") as exc:
        await platform.speech.render(GREETING, voice="np_sita")
    assert exc.value.code == "invalid_voice"
    with pytest.raises(Invalid, match="from 0.39 to 2.19") as exc:
        await platform.speech.render(GREETING, length_factor=-1)
    with pytest.raises(Invalid, match="ne, hi, en, sw"):
        await platform.speech.render(GREETING, language="fr")


def test_an_unknown_tts_engine_is_refused_naming_the_engines(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="UJUMBE_TTS_ENGINE='festival' is not an engine; use one of espeak"):
        Platform(make_settings(tmp_path, None, tts_engine="festival"))


async def test_voice_test_answers_a_wav_of_the_speech(platform: Platform, api: Any) -> None:
    account = await make_account(platform)
    r = await api.post("/v1/voice/test", headers=auth(account),
                       json={"text": GREETING, "voice": "np_prasanna", "length_factor": "1.4", "language": "ne"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/wav"
    w, frames = read_wav(r.content)
    assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
    assert frames == await platform.speech.render(GREETING, voice="np_prasanna", length_factor=1.4)
    # the defaults: np_rija, 1.0, Nepali
    r = await api.post("/v1/voice/test", headers=auth(account), json={"text": GREETING})
    assert read_wav(r.content)[1] == await platform.speech.render(GREETING)

    for body, code, words in [
        ({"text": GREETING, "voice": "np_sita"}, "invalid_voice", "np_rija, np_prasanna, np_binod"),
        ({"text": GREETING, "length_factor": 0}, "invalid_length_factor", "from 0.39 to 2.19"),
        ({"text": GREETING, "length_factor": "slow"}, "invalid_length_factor", "from 0.39 to 2.19"),
        ({"text": GREETING, "language": "xx"}, "invalid_language", "ne, hi, en, sw"),
        ({"text": "  "}, "missing_text", "Give a text"),
        ({"voice": "np_rija"}, "validation_error", "text"),
        # within the 5,000 characters, but said digit by digit: about 54 minutes of audio
        ({"text": "0" * 5000}, "text_too_long", "at most 15 minutes"),
    ]:
        r = await api.post("/v1/voice/test", headers=auth(account), json=body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["code"] == code and words in r.json()["error"]["message"], r.text
    assert (await api.post("/v1/voice/test", json={"text": GREETING})).status_code == 401


async def test_voices_are_listed(platform: Platform, api: Any) -> None:
    account = await make_account(platform)
    r = await api.get("/v1/voices", headers=auth(account))
    assert r.status_code == 200
    assert [(v["name"], v["default"]) for v in r.json()["voices"]] == [
        ("np_rija", True), ("np_prasanna", False), ("np_binod", False)]
    assert r.json()["languages"]["ne"] == "Nepali"


# --- audio files ---


async def test_a_wav_and_an_mp3_upload_decode_to_8khz_and_download_as_wav(platform: Platform, api: Any) -> None:
    account = await make_account(platform)
    # a 3 s 44.1 kHz stereo WAV, as multipart
    r = await api.post("/v1/audio", headers=auth(account),
                       files={"file": ("welcome.wav", wav_file(44100, 2, 3.0), "audio/wav")})
    assert r.status_code == 201, r.text
    wav_audio = r.json()
    assert wav_audio["name"] == "welcome.wav" and wav_audio["content_type"] == "audio/wav"
    assert wav_audio["seconds"] == pytest.approx(3.0, rel=0.05)
    # a 6 s 16 kHz MP3, as the raw body
    mp3 = mp3_file(6.0)
    r = await api.post("/v1/audio?name=offer.mp3", headers={**auth(account), "content-type": "audio/mpeg"},
                       content=mp3)
    assert r.status_code == 201, r.text
    mp3_audio = r.json()
    assert mp3_audio["name"] == "offer.mp3" and mp3_audio["content_type"] == "audio/mpeg"
    assert mp3_audio["seconds"] == pytest.approx(6.0, rel=0.05) and mp3_audio["size"] == len(mp3)

    for audio, secs in ((wav_audio, 3.0), (mp3_audio, 6.0)):
        r = await api.get(f"/v1/audio/{audio['id']}/wav", headers=auth(account))
        assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
        w, frames = read_wav(r.content)
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        assert w.getnframes() / 8000 == pytest.approx(secs, rel=0.05)
        assert rms(frames) > 2000  # the tone, not silence
        # what a call plays (h3's voice pipeline): the same samples
        assert await platform.speech.load_audio(account["account_id"], audio["id"]) == frames

    r = await api.get(f"/v1/audio/{mp3_audio['id']}", headers=auth(account))
    assert r.status_code == 200 and r.json() == mp3_audio
    r = await api.get("/v1/audio", headers=auth(account))
    assert r.json()["total"] == 2 and [a["id"] for a in r.json()["audio"]] == [mp3_audio["id"], wav_audio["id"]]
    r = await api.get("/v1/audio?limit=1&offset=1", headers=auth(account))
    assert r.json()["total"] == 2 and [a["id"] for a in r.json()["audio"]] == [wav_audio["id"]]

    r = await api.delete(f"/v1/audio/{wav_audio['id']}", headers=auth(account))
    assert r.status_code == 204
    r = await api.get(f"/v1/audio/{wav_audio['id']}/wav", headers=auth(account))
    assert r.status_code == 404 and r.json()["error"]["code"] == "audio_not_found"
    assert (await api.get("/v1/audio", headers=auth(account))).json()["total"] == 1


async def test_another_accounts_audio_is_not_found(platform: Platform, api: Any) -> None:
    owner, other = await make_account(platform), await make_account(platform)
    r = await api.post("/v1/audio", headers=auth(owner), files={"file": ("a.wav", wav_file(8000, 1, 1.0))},
                       data={"name": "Greeting"})
    assert r.status_code == 201 and r.json()["name"] == "Greeting"
    audio_id = r.json()["id"]
    for method, path in (("GET", f"/v1/audio/{audio_id}"), ("GET", f"/v1/audio/{audio_id}/wav"),
                         ("DELETE", f"/v1/audio/{audio_id}")):
        r = await api.request(method, path, headers=auth(other))
        assert r.status_code == 404 and r.json()["error"]["code"] == "audio_not_found", (method, path, r.text)
    assert (await api.get("/v1/audio", headers=auth(other))).json() == {"total": 0, "audio": []}
    with pytest.raises(NotFound):
        await platform.speech.load_audio(other["account_id"], audio_id)
    assert (await api.get(f"/v1/audio/{audio_id}", headers=auth(owner))).status_code == 200  # still there


async def test_bad_audio_is_refused_naming_what_is_accepted(platform: Platform, api: Any) -> None:
    account = await make_account(platform)
    good = wav_file(8000, 1, 1.0)
    cases = [
        (("notes.txt", b"hello, this is not audio"), 400, "unsupported_audio", "MP3, WAV or FLAC"),
        (("song.ogg", b"OggS\x00\x02" + b"\x00" * 200), 400, "unsupported_audio", "MP3, WAV or FLAC"),
        (("cut.wav", good[:30]), 400, "invalid_audio", "could not be read"),  # the header cut short
        (("empty.mp3", b""), 400, "invalid_audio", "empty"),
        (("long.wav", wav_file(8000, 1, 601, width=1)), 400, "audio_too_long", "at most 10 minutes"),
    ]
    for (name, data), status, code, words in cases:
        r = await api.post("/v1/audio", headers=auth(account), files={"file": (name, data, "audio/wav")})
        assert r.status_code == status, (name, r.text)
        assert r.json()["error"]["code"] == code and words in r.json()["error"]["message"], (name, r.text)

    big = b"ID3" + b"\x00" * (10 * 1024 * 1024)
    r = await api.post("/v1/audio", headers={**auth(account), "content-type": "audio/mpeg"}, content=big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "audio_too_large"
    assert "10 MB" in r.json()["error"]["message"]
    r = await api.post("/v1/audio", headers=auth(account), files={"file": ("big.mp3", big)})
    assert r.status_code == 413 and r.json()["error"]["code"] == "audio_too_large"

    r = await api.post("/v1/audio", headers={**auth(account), "content-type": "text/plain"}, content=good)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_upload"
    assert "multipart/form-data" in r.json()["error"]["message"]
    r = await api.post("/v1/audio", headers=auth(account), files={"other": ("a.wav", good)})
    assert r.status_code == 400 and r.json()["error"]["code"] == "missing_file"
    assert (await api.get("/v1/audio", headers=auth(account))).json()["total"] == 0
