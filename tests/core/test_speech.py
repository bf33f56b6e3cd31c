"""How a message's text is prepared to be said: voices, speed, digits in the
language's script and one by one for codes, abbreviations written out."""

from __future__ import annotations

import io
import wave

import pytest

from ujumbe.core import speech
from ujumbe.core.speech import Pause, SpeechError


def said(text: str, language: str = "ne", code: str | None = None) -> str:
    return speech.spoken(speech.speakable(text, language, code))


def test_the_three_tingting_voices_and_np_rija_by_default() -> None:
    assert list(speech.VOICES) == ["np_rija", "np_prasanna", "np_binod"]
    assert speech.DEFAULT_VOICE == "np_rija"
    for voice in speech.VOICES:
        assert speech.check_voice(voice) == voice


@pytest.mark.parametrize("voice", ["np_sita", "", "NP_RIJA", 5, None])
def test_an_unknown_voice_is_refused_with_the_valid_ones(voice: object) -> None:
    with pytest.raises(SpeechError) as exc:
        speech.check_voice(voice)
    assert exc.value.code == "invalid_voice"
    assert "np_rija, np_prasanna, np_binod" in str(exc.value)


@pytest.mark.parametrize(("factor", "wpm"), [
    (1.0, 175), (1.4, 125), ("1.4", 125), (2.0, 88), (2, 88), (0.5, 350),
    (0.39, 449), (2.19, 80),  # the ends of the range: the engine's fastest and slowest
])
def test_rate_is_175_over_the_length_factor_within_80_to_450_wpm(factor: object, wpm: int) -> None:
    assert speech.rate_for(factor) == wpm


@pytest.mark.parametrize("factor", [0, -1, "-1.4", 0.05, 0.38, 2.2, 11, "fast", "", float("nan"), float("inf"), True, None,
                                    [1.0], "1" * 100])
def test_a_length_factor_that_is_not_a_positive_number_in_range_is_refused(factor: object) -> None:
    with pytest.raises(SpeechError) as exc:
        speech.rate_for(factor)
    assert exc.value.code == "invalid_length_factor"
    assert "from 0.39 to 2.19" in str(exc.value)


def test_a_codes_digits_are_said_one_by_one_in_devanagari_and_twice() -> None:
    parts = speech.speakable("तपाईंको कोड 1234 हो", "ne", code="1234")
    assert said("तपाईंको कोड 1234 हो", code="1234") == "तपाईंको कोड, १, २, ३, ४, १, २, ३, ४, हो"
    # a pause between every digit, a longer one before the code is said again
    digits = [p for p in parts if isinstance(p, str) and p in "१२३४"]
    assert digits == ["१", "२", "३", "४"] * 2
    assert Pause(speech.REPEAT_PAUSE_MS) in parts
    # espeak's Nepali voice reads ASCII digits as an English number
    assert not any(ch.isascii() and ch.isdigit() for p in parts if isinstance(p, str) for ch in p)


def test_a_code_not_in_the_text_is_said_after_it_twice() -> None:
    assert said("तपाईंको कोड यो हो", code="९८७६") == "तपाईंको कोड यो हो, ९, ८, ७, ६, ९, ८, ७, ६"


def test_a_code_in_another_language_keeps_its_digits() -> None:
    assert said("Your code is 4821", "en", code="4821") == "Your code is, 4, 8, 2, 1, 4, 8, 2, 1"


@pytest.mark.parametrize("code", ["", "12 34", "१२-३४", "x" * 21, "<b>"])
def test_a_code_is_letters_and_digits(code: str) -> None:
    with pytest.raises(SpeechError) as exc:
        speech.speakable("कोड", "ne", code=code)
    assert exc.value.code == "invalid_code"


def test_long_numbers_are_said_digit_by_digit_and_amounts_as_numbers() -> None:
    # a phone number, in either script: digit by digit (espeak reads ९८४३८१८७०० as one number)
    assert said("फोन ९८४३८१८७०० मा") == "फोन, ९, ८, ४, ३, ८, १, ८, ७, ०, ०, मा"
    assert said("फोन 9843818700") == "फोन, ९, ८, ४, ३, ८, १, ८, ७, ०, ०"
    # a code written with spaces, as TingTing's OTP message writes it
    assert said("Hi your OTP is 1 2 3 4 5", "en") == "Hi your OTP is, 1, 2, 3, 4, 5"
    # short numbers, amounts, years: one number, in Devanagari
    assert said("रु. 1,500 तिर्नुहोस्") == "रुपैयाँ १५०० तिर्नुहोस्"
    assert said("रु.25000 बाँकी") == "रुपैयाँ २५००० बाँकी"
    assert said("2080 साल, 25 वर्ष, 3.5 किलो") == "२०८० साल, २५ वर्ष, ३.५ किलो"
    assert said("Lipa KSh 1500 leo", "sw") == "Lipa shilingi 1500 leo"


def test_abbreviations_are_written_out() -> None:
    assert said("रु. ५०० र Rs 20, डा. राम, नं. ३") == "रुपैयाँ ५०० र रुपैयाँ २०, डाक्टर राम, नम्बर ३"
    assert said("ने.रु. १०, 50% छुट") == "नेपाली रुपैयाँ १०, ५० प्रतिशत छुट"
    assert said("गुरु. आउनुहोस्") == "गुरु. आउनुहोस्"  # ends in रु. but is another word


def test_ssml_escapes_the_text_and_says_pauses_as_breaks() -> None:
    out = speech.ssml(speech.speakable("A <b> & 12345", "en"))
    assert out == ('<speak>A &lt;b&gt; &amp; <break time="150ms"/>1<break time="300ms"/>2<break time="300ms"/>3'
                   '<break time="300ms"/>4<break time="300ms"/>5</speak>')


@pytest.mark.parametrize(("text", "language", "code"), [
    ("", "ne", "missing_text"), ("   ", "ne", "missing_text"), ("x" * 5001, "ne", "text_too_long"),
    ("नमस्कार", "xx", "invalid_language"), ("नमस्कार", "", "invalid_language"),
])
def test_what_cannot_be_said(text: str, language: str, code: str) -> None:
    with pytest.raises(SpeechError) as exc:
        speech.speakable(text, language)
    assert exc.value.code == code


def test_control_characters_and_runs_of_space_are_dropped() -> None:
    assert said("नमस्कार\x00\n\t  साथी") == "नमस्कार साथी"


def test_wav_is_a_valid_8khz_mono_16bit_file() -> None:
    pcm = b"\x01\x00" * 8000
    with wave.open(io.BytesIO(speech.wav(pcm))) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, 8000, 8000)
        assert w.readframes(8000) == pcm


@pytest.mark.parametrize(("head", "kind"), [
    (b"RIFF\x00\x00\x00\x00WAVEfmt ", "wav"), (b"ID3\x04\x00", "mp3"), (b"\xff\xfb\x90\x00", "mp3"),
    (b"fLaC\x00\x00", "flac"), (b"\xff\xf1\x50\x80", None),  # AAC (ADTS), not MP3
    (b"OggS\x00", None), (b"<html>", None), (b"", None),
])
def test_audio_files_are_known_by_their_first_bytes(head: bytes, kind: str | None) -> None:
    assert speech.sniff_audio(head) == kind


def test_a_text_is_bounded_by_how_long_it_lasts_not_only_its_characters() -> None:
    prose = " ".join(["ramro"] * 800)  # 800 words: under 5 minutes at 175 wpm, 10 at 80
    assert 270 < speech.check_duration(speech.speakable(prose, "en"), 175) < 280
    assert speech.check_duration(speech.speakable(prose, "en"), 80) == 600
    digits = speech.speakable("7" * 5000, "ne")  # a digit and a pause for each character
    with pytest.raises(SpeechError, match="about 54 minutes; at most 15") as caught:
        speech.check_duration(digits, 175)
    assert caught.value.code == "text_too_long"
