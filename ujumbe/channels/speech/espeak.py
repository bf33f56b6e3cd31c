"""espeak-ng through ctypes, from the ``espeakng-loader`` wheel (it bundles
libespeak-ng 1.52 and its data, Nepali included: no system package).

The library keeps global state and is not thread-safe: one lock for the
process, whoever calls. It synthesizes synchronously into our callback at
its own rate (22,050 Hz), which is then resampled to 8 kHz with a low-pass
filter (miniaudio's resampler) so nothing above 4 kHz folds back as noise.
Callers in async code use ``asyncio.to_thread`` (services/speech.py).
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

from ujumbe.channels.speech.decode import resample
from ujumbe.core import speech as rules

# espeak_ng's speak_lib.h
AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_DONT_EXIT = 0x8000
POS_CHARACTER = 1
CHARS_UTF8 = 1
SSML = 0x10
RATE = 1  # espeak_PARAMETER espeakRATE
EE_OK = 0

# Our voice names -> espeak-ng voice variants: distinct pitch and timbre.
VARIANTS = {"np_rija": "f3", "np_prasanna": "m3", "np_binod": "m1"}

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class EngineError(RuntimeError):
    pass


class _Library:
    """libespeak-ng, initialized once per process, used under ``lock``."""

    lock = threading.Lock()
    _instance: "_Library | None" = None

    def __init__(self) -> None:
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(),
                                     INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise EngineError(f"espeak-ng did not start (espeak_Initialize answered {rate})")
        self.lib, self.rate = lib, rate
        self._chunks: list[bytes] = []
        self._callback = _SYNTH_CALLBACK(self._collect)  # kept referenced: the library calls it
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, samples: Any, count: int, _events: Any) -> int:
        if samples and count > 0:
            self._chunks.append(ctypes.string_at(samples, count * 2))
        return 0  # go on

    @classmethod
    def get(cls) -> "_Library":
        """Under ``lock``."""
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def synth(self, ssml: str, voice: str, wpm: int) -> bytes:
        """PCM16 at ``self.rate``. Under ``lock``."""
        if (err := self.lib.espeak_SetVoiceByName(voice.encode())) != EE_OK:
            raise EngineError(f"espeak-ng has no voice {voice} (error {err})")
        self.lib.espeak_SetParameter(RATE, wpm, 0)
        data = ssml.encode()
        self._chunks = []
        err = self.lib.espeak_Synth(data, len(data) + 1, 0, POS_CHARACTER, 0, CHARS_UTF8 | SSML, None, None)
        self.lib.espeak_Synchronize()
        if err != EE_OK:
            raise EngineError(f"espeak-ng could not say the text (error {err})")
        pcm, self._chunks = b"".join(self._chunks), []
        return pcm


class Espeak:
    """The text-to-speech port on espeak-ng (blocking: call it in a thread)."""

    name = "espeak"

    def render(self, text: str, *, voice: str, rate_wpm: int, language: str) -> bytes:
        variant = VARIANTS[rules.check_voice(voice)]
        wpm = max(rules.MIN_WPM, min(rules.MAX_WPM, int(rate_wpm)))
        with _Library.lock:
            lib = _Library.get()
            pcm = lib.synth(text, f"{rules.check_language(language)}+{variant}", wpm)
            rate = lib.rate
        return resample(pcm, rate)
