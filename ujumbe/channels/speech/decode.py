"""Audio files to telephone audio with miniaudio (PyPI wheels; it bundles
dr_mp3, dr_wav and dr_flac): decoded, mixed down to mono and resampled to
8 kHz PCM16 in one call. Its resampler low-passes at the lower rate's
Nyquist frequency (4 kHz here), so downsampling does not alias."""

from __future__ import annotations

from dataclasses import dataclass

import miniaudio

from ujumbe.core import speech as rules

_S16 = miniaudio.SampleFormat.SIGNED16
_INFO = {"mp3": miniaudio.mp3_get_info, "wav": miniaudio.wav_get_info, "flac": miniaudio.flac_get_info}


class BadAudio(ValueError):
    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Decoded:
    format: str  # mp3 | wav | flac
    pcm: bytes  # PCM16 LE mono 8 kHz
    seconds: float


def resample(pcm: bytes, rate: int) -> bytes:
    """PCM16 mono at ``rate`` to 8 kHz."""
    if rate == rules.SAMPLE_RATE or not pcm:
        return pcm
    return bytes(miniaudio.convert_frames(_S16, 1, rate, pcm, _S16, 1, rules.SAMPLE_RATE))


def decode(data: bytes) -> Decoded:
    """An MP3, WAV or FLAC file as 8 kHz mono PCM16; ``BadAudio`` says why not.
    The duration is read from the file's headers first, so a file that
    would decode to more than the limit is refused before it is decoded."""
    kind = rules.sniff_audio(data)
    if kind is None:
        raise BadAudio(f"This is not an audio file we can read; send {rules.ACCEPTED_AUDIO}", "unsupported_audio")
    try:
        info = _INFO[kind](data)
    except miniaudio.DecodeError:
        raise BadAudio(f"The {kind.upper()} file could not be read (damaged, or an encoding we do not "
                       f"decode); send {rules.ACCEPTED_AUDIO}", "invalid_audio") from None
    if info.duration > rules.MAX_AUDIO_SECONDS:
        raise BadAudio(f"The audio is {rules.minutes(round(info.duration))} long; at most "
                       f"{rules.minutes(rules.MAX_AUDIO_SECONDS)} are accepted", "audio_too_long")
    try:
        sound = miniaudio.decode(data, output_format=_S16, nchannels=1, sample_rate=rules.SAMPLE_RATE)
    except miniaudio.DecodeError:
        raise BadAudio(f"The {kind.upper()} file could not be decoded; send {rules.ACCEPTED_AUDIO}",
                       "invalid_audio") from None
    pcm = sound.samples.tobytes()
    if not pcm:
        raise BadAudio("The audio file holds no sound", "invalid_audio")
    # a header may understate: the limit holds for what was decoded
    pcm = pcm[: rules.MAX_AUDIO_SECONDS * rules.BYTES_PER_SECOND]
    return Decoded(kind, pcm, rules.seconds_of(pcm))
