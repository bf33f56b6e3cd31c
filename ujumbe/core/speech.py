"""Speech rules: the voices, how fast they speak, and how a message's text
is prepared so a synthesizer says it right (docs/speech.md).

Pure: no engine here. A text becomes a list of parts (text and pauses) and
then SSML, which the text-to-speech port takes. Audio everywhere is PCM16
little-endian mono at 8 kHz, what G.711 encodes from.
"""

from __future__ import annotations

import io
import math
import re
import wave
from dataclasses import dataclass

SAMPLE_RATE = 8000  # Hz: telephone audio
BYTES_PER_SECOND = SAMPLE_RATE * 2  # PCM16 mono

# TingTing's voice names (its test/voice and begin endpoints), and what each sounds like.
VOICES = {
    "np_rija": "a woman's voice",
    "np_prasanna": "a man's voice",
    "np_binod": "another man's voice, lower",
}
DEFAULT_VOICE = "np_rija"

# Languages the engine speaks, with the digits their texts are written in.
LANGUAGES = {"ne": "Nepali", "hi": "Hindi", "en": "English", "sw": "Swahili"}
DEFAULT_LANGUAGE = "ne"
_DEVANAGARI = ("ne", "hi")

# length_factor is TingTing's length scale: 2.0 takes twice as long to say.
NORMAL_WPM = 175  # words a minute at length_factor 1.0 (espeak-ng's default)
MIN_WPM, MAX_WPM = 80, 450  # what espeak-ng accepts
# The factors that give those rates: one range for calls, campaigns and tests of
# a voice, so no factor is taken that would then sound like another.
MIN_LENGTH_FACTOR, MAX_LENGTH_FACTOR = round(NORMAL_WPM / MAX_WPM, 2), round(NORMAL_WPM / MIN_WPM, 2)  # 0.39, 2.19

MAX_TEXT = 5000  # characters said at once: several minutes of speech
MAX_CODE = 20  # characters of a one-time code
MAX_SPEECH_SECONDS = 900  # what one text may last, estimated from its words and pauses (check_duration)

DIGIT_PAUSE_MS = 300  # between the digits of a code
REPEAT_PAUSE_MS = 700  # before a code is said again

# Audio files clients upload (services/speech.py).
MAX_AUDIO_BYTES = 10 * 1024 * 1024
MAX_AUDIO_SECONDS = 600
AUDIO_FORMATS = {"mp3": "audio/mpeg", "wav": "audio/wav", "flac": "audio/flac"}
ACCEPTED_AUDIO = "MP3, WAV or FLAC"


class SpeechError(ValueError):
    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def check_voice(voice: object) -> str:
    if not isinstance(voice, str) or voice not in VOICES:
        shown = voice if isinstance(voice, str) and len(voice) <= 40 else "that"
        raise SpeechError(f"'{shown}' is not a voice; use one of {', '.join(VOICES)}", "invalid_voice")
    return voice


def check_language(language: object) -> str:
    if not isinstance(language, str) or language not in LANGUAGES:
        shown = language if isinstance(language, str) and len(language) <= 40 else "that"
        raise SpeechError(f"'{shown}' is not a language; use one of {', '.join(LANGUAGES)}", "invalid_language")
    return language


def length_factor_of(value: object) -> float:
    """``value`` (a number, or a string of one as TingTing sends it) as a length factor."""
    bad = SpeechError(
        f"length_factor must be a number from {MIN_LENGTH_FACTOR} to {MAX_LENGTH_FACTOR:g} "
        "(1.0 is the normal speed, 2.0 takes twice as long)", "invalid_length_factor")
    if isinstance(value, bool):
        raise bad
    if isinstance(value, str):
        try:
            value = float(value.strip()) if len(value) <= 40 else None
        except ValueError:
            raise bad from None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad
    if not MIN_LENGTH_FACTOR <= value <= MAX_LENGTH_FACTOR:
        raise bad
    return float(value)


def rate_for(length_factor: object) -> int:
    """Words a minute for a length factor: 175 / length_factor, within what
    the engine accepts (80-450)."""
    return max(MIN_WPM, min(MAX_WPM, round(NORMAL_WPM / length_factor_of(length_factor))))


# --- text preparation ---


@dataclass(frozen=True)
class Pause:
    ms: int


Part = str | Pause

# Abbreviations a synthesizer reads letter by letter (or not at all), by language.
ABBREVIATIONS: dict[str, dict[str, str]] = {
    "ne": {
        "ने.रु.": "नेपाली रुपैयाँ", "रु.": "रुपैयाँ", "रू.": "रुपैयाँ", "Rs.": "रुपैयाँ", "Rs": "रुपैयाँ",
        "NPR": "रुपैयाँ", "नं.": "नम्बर", "डा.": "डाक्टर", "कि.मी.": "किलोमिटर", "कि.मि.": "किलोमिटर",
        "वि.सं.": "विक्रम संवत", "बि.सं.": "विक्रम संवत", "ई.सं.": "ईस्वी संवत", "प्रा.लि.": "प्राइभेट लिमिटेड",
        "%": " प्रतिशत",
    },
    "hi": {"रु.": "रुपये", "Rs.": "रुपये", "Rs": "रुपये", "डॉ.": "डॉक्टर", "नं.": "नंबर", "%": " प्रतिशत"},
    "en": {"Rs.": "rupees", "Rs": "rupees", "KSh": "shillings", "Ksh": "shillings", "KES": "shillings",
           "Dr.": "doctor", "No.": "number", "%": " percent"},
    "sw": {"KSh": "shilingi", "Ksh": "shilingi", "KES": "shilingi", "Sh.": "shilingi", "%": " asilimia"},
}
# Words after which a run of digits is an amount or a year, said as one number.
_NUMBER_AFTER = {
    "ne": ("रुपैयाँ", "सन्"), "hi": ("रुपये", "सन्"), "en": ("rupees", "shillings", "dollars"),
    "sw": ("shilingi", "dola", "mwaka", "miaka"),
}
# Words before which it is a year or a count.
_NUMBER_BEFORE = {"ne": ("साल", "वर्ष"), "hi": ("साल", "वर्ष"), "en": ("years",), "sw": ()}

_DEV_TO_ASCII = str.maketrans("०१२३४५६७८९", "0123456789")
_ASCII_TO_DEV = str.maketrans("0123456789", "०१२३४५६७८९")
_DEV_LETTERS = "\u0900-\u0963\u0970-\u097f"  # Devanagari but its digits and dandas
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# Grouped or decimal numbers (amounts), spaced single digits (a code written
# "1 2 3 4"), or a plain run of digits.
_NUMBER = re.compile(
    r"(?P<grouped>(?<![0-9])[0-9]{1,3}(?:,[0-9]{2,3})+(?:\.[0-9]+)?(?![0-9]))"
    r"|(?P<decimal>(?<![0-9])[0-9]+\.[0-9]+(?![0-9]))"
    r"|(?P<spaced>(?<![0-9])[0-9](?: [0-9]){2,}(?![0-9]))"
    r"|(?P<run>[0-9]+)"
)
# Runs this long are codes, phone and account numbers: said digit by digit.
ONE_BY_ONE_FROM = 4


def _abbreviations(language: str) -> re.Pattern[str] | None:
    table = ABBREVIATIONS.get(language)
    if not table:
        return None
    # Longest first, so ने.रु. wins over रु.; a word on its own only, not the
    # end of another (गुरु. ends in रु.: Devanagari vowel signs are not \w).
    alts = "|".join(
        (rf"(?<![\w.{_DEV_LETTERS}]){re.escape(k)}" if k[0].isalpha() else re.escape(k))
        for k in sorted(table, key=len, reverse=True)
    )
    return re.compile(rf"(?:{alts})(?![^\W\d_]|[{_DEV_LETTERS}])")


_ABBREVIATION_RES = {lang: _abbreviations(lang) for lang in LANGUAGES}


def digits_of(code: str, language: str) -> list[Part]:
    """``code`` said one character at a time, with a pause between each."""
    out: list[Part] = []
    for ch in code:
        if out:
            out.append(Pause(DIGIT_PAUSE_MS))
        out.append(_script(ch, language))
    return out


def _script(text: str, language: str) -> str:
    return text.translate(_ASCII_TO_DEV) if language in _DEVANAGARI else text


def _numbers(text: str, language: str) -> list[Part]:
    """``text`` (ASCII digits) with its digits as they should be said."""
    parts: list[Part] = []
    pos = 0
    after, before_ = _NUMBER_AFTER.get(language, ()), _NUMBER_BEFORE.get(language, ())
    for m in _NUMBER.finditer(text):
        before = text[pos:m.start()]
        if before:
            parts.append(_script(before, language))
        pos = m.end()
        kind, raw = m.lastgroup, m.group()
        amount = (bool(after) and text[:m.start()].rstrip().lower().endswith(after)
                  or bool(before_) and text[m.end():].lstrip().startswith(before_))
        if kind == "spaced" or (kind == "run" and len(raw) >= ONE_BY_ONE_FROM and not amount):
            parts.append(Pause(DIGIT_PAUSE_MS // 2))
            parts += digits_of(raw.replace(" ", ""), language)
            parts.append(Pause(DIGIT_PAUSE_MS // 2))
        else:  # an amount: one number, without its group separators
            parts.append(_script(raw.replace(",", "") if kind == "grouped" else raw, language))
    if pos < len(text):
        parts.append(_script(text[pos:], language))
    return parts


def check_code(code: object) -> str:
    if not isinstance(code, str) or not code.strip():
        raise SpeechError("A code is a non-empty string", "invalid_code")
    code = code.strip().translate(_DEV_TO_ASCII)
    if len(code) > MAX_CODE or not code.isascii() or not code.isalnum():
        raise SpeechError(f"A code is at most {MAX_CODE} letters and digits", "invalid_code")
    return code


def speakable(text: str, language: str = DEFAULT_LANGUAGE, code: str | None = None) -> list[Part]:
    """What to say for ``text``: abbreviations written out, digits in the
    language's own script (Devanagari for Nepali: its voice reads ASCII digits
    as English), codes and long numbers digit by digit with pauses, and the
    one-time ``code`` (when given) said twice where it stands in the text,
    or after it when the text does not contain it."""
    language = check_language(language)
    if not isinstance(text, str) or not text.strip():
        raise SpeechError("Give a text to say", "missing_text")
    if len(text) > MAX_TEXT:
        raise SpeechError(f"A text to say is at most {MAX_TEXT} characters", "text_too_long")
    text = " ".join(_CONTROL.sub(" ", text).split()).translate(_DEV_TO_ASCII)
    pattern = _ABBREVIATION_RES.get(language)
    if pattern is not None:
        table = ABBREVIATIONS[language]
        text = " ".join(pattern.sub(lambda m: f"{table[m.group()]} ", text).split())
    if code is None:
        return _merge(_numbers(text, language))
    code = check_code(code)
    said = [*digits_of(code, language), Pause(REPEAT_PAUSE_MS), *digits_of(code, language)]
    found = re.search(rf"(?<![0-9A-Za-z]){re.escape(code)}(?![0-9A-Za-z])", text)
    if found is None:
        return _merge([*_numbers(text, language), Pause(REPEAT_PAUSE_MS), *said])
    return _merge([*_numbers(text[:found.start()], language), Pause(DIGIT_PAUSE_MS // 2), *said,
                   Pause(DIGIT_PAUSE_MS // 2), *_numbers(text[found.end():], language)])


def _merge(parts: list[Part]) -> list[Part]:
    """Adjacent texts joined, adjacent pauses added up, none at the ends."""
    out: list[Part] = []
    for p in parts:
        if isinstance(p, str) and not p:
            continue
        if out and type(out[-1]) is type(p):
            last = out.pop()
            p = Pause(last.ms + p.ms) if isinstance(p, Pause) else last + p  # type: ignore[union-attr,operator]
        out.append(p)
    while out and isinstance(out[0], Pause):
        out.pop(0)
    while out and isinstance(out[-1], Pause):
        out.pop()
    return out


def check_duration(parts: list[Part], wpm: int) -> float:
    """About how many seconds ``parts`` last said at ``wpm``; a text past
    MAX_SPEECH_SECONDS raises. The character limit alone does not bound it:
    a long run of digits is said digit by digit with a pause after each,
    so 5,000 characters could be an hour of audio and a minute of CPU."""
    words = sum(len(p.split()) for p in parts if isinstance(p, str))
    seconds = words * 60 / wpm + sum(p.ms for p in parts if isinstance(p, Pause)) / 1000
    if seconds > MAX_SPEECH_SECONDS:
        raise SpeechError(
            f"Said at this length_factor the text would last about {math.ceil(seconds / 60)} minutes; at most "
            f"{MAX_SPEECH_SECONDS // 60} minutes are said at once (long digit runs are said digit by digit): "
            "shorten the text or lower length_factor", "text_too_long")
    return seconds


def spoken(parts: list[Part]) -> str:
    """The parts as plain text, pauses as commas (for an engine without SSML, and to read)."""
    text = "".join(", " if isinstance(p, Pause) else p for p in parts)
    return " ".join(re.sub(r"\s*,(\s*,)*\s*", ", ", text).split())


def ssml(parts: list[Part]) -> str:
    """The parts as SSML: text, and ``<break>`` for each pause."""
    body = "".join(f'<break time="{p.ms}ms"/>' if isinstance(p, Pause) else _xml(p) for p in parts)
    return f"<speak>{body}</speak>"


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# --- audio ---


def seconds_of(pcm: bytes) -> float:
    return len(pcm) / BYTES_PER_SECOND


def wav(pcm: bytes, rate: int = SAMPLE_RATE) -> bytes:
    """PCM16 mono in a WAV container (for downloads and players)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return buf.getvalue()


def sniff_audio(data: bytes) -> str | None:
    """The format of an audio file by its first bytes (mp3, wav, flac), or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    if data[:4] == b"fLaC":
        return "flac"
    if data[:3] == b"ID3":
        return "mp3"
    # an MPEG audio frame header: 11 sync bits, a layer (not 00, which is AAC's ADTS)
    if len(data) >= 4 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0 and (data[1] >> 1) & 3:
        return "mp3"
    return None


def minutes(seconds: float) -> str:
    return f"{seconds / 60:g} minutes" if seconds >= 60 else f"{seconds:g} seconds"
