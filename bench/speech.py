"""Text-to-speech speed: seconds of 8 kHz telephone audio espeak-ng makes
per second of CPU, for distinct Nepali texts (so no cache helps), beside
the ceiling of the same run: espeak-ng's synthesis alone, without the
resampling to 8 kHz. Also decoding an uploaded MP3 once to 8 kHz.

    .venv/bin/python bench/speech.py [--texts 200]
"""

from __future__ import annotations

import argparse
import array
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ujumbe.channels.speech import decode, espeak  # noqa: E402
from ujumbe.core import speech  # noqa: E402

SENTENCE = "नमस्कार {n}, टिङ्टिंगमा हजुरलाई स्वागत छ। हजुरको खातामा रु. {amount} जम्मा भएको छ।"


def cpu_of(fn, *args, **kw):  # type: ignore[no-untyped-def]
    started = time.process_time()
    out = fn(*args, **kw)
    return out, time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=200)
    args = parser.parse_args()
    engine = espeak.Espeak()
    texts = [speech.ssml(speech.speakable(SENTENCE.format(n=n, amount=100 + n))) for n in range(args.texts)]
    engine.render(texts[0], voice="np_rija", rate_wpm=175, language="ne")  # load the library and its data

    audio_s = cpu_render = 0.0
    for text in texts:
        pcm, cpu = cpu_of(engine.render, text, voice="np_rija", rate_wpm=175, language="ne")
        audio_s += speech.seconds_of(pcm)
        cpu_render += cpu
    raw_s = cpu_synth = 0.0
    with espeak._Library.lock:
        lib = espeak._Library.get()
        for text in texts:
            pcm, cpu = cpu_of(lib.synth, text, "ne+f3", 175)
            raw_s += len(pcm) / 2 / lib.rate
            cpu_synth += cpu
    print(f"{args.texts} distinct Nepali sentences, {audio_s:.0f} s of 8 kHz audio")
    print(f"render (synthesis + resampling to 8 kHz): {audio_s / cpu_render:8.0f} s of audio per CPU second")
    print(f"ceiling, synthesis alone at {lib.rate} Hz:  {raw_s / cpu_synth:8.0f} s of audio per CPU second"
          f"  (render is {cpu_synth / cpu_render:.0%} of it)")

    import lameenc  # the tests' MP3 encoder

    rate, secs = 44100, 60
    tone = array.array("h", (int(8000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(rate * secs)))
    enc = lameenc.Encoder()
    enc.set_bit_rate(128)
    enc.set_in_sample_rate(rate)
    enc.set_channels(1)
    mp3 = bytes(enc.encode(tone.tobytes()) + enc.flush())
    decoded, cpu = cpu_of(decode.decode, mp3)
    print(f"decode a {secs} s 44.1 kHz 128 kbit/s MP3 ({len(mp3) / 1e6:.1f} MB) to 8 kHz: {cpu * 1000:.0f} ms CPU "
          f"({decoded.seconds / cpu:.0f} s of audio per CPU second)")


if __name__ == "__main__":
    main()
