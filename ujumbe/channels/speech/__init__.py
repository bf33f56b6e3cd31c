"""Speech for the voice channel: text-to-speech engines and the audio decoder.

Engines are chosen by name (``UJUMBE_TTS_ENGINE``); each takes SSML and
answers PCM16 little-endian mono at 8 kHz (ujumbe.services.speech.TextToSpeech).
"""

from __future__ import annotations

from typing import Any

ENGINES = ("espeak",)


def engine(name: str) -> Any:
    """The text-to-speech engine called ``name``; loaded on its first use."""
    if name == "espeak":
        from ujumbe.channels.speech.espeak import Espeak

        return Espeak()
    raise ValueError(f"UJUMBE_TTS_ENGINE={name!r} is not an engine; use one of {', '.join(ENGINES)}")
