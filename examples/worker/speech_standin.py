#!/usr/bin/env python3
"""A stand-in for a user's speech model (whisper-class) as a Baton worker: it writes the job's
transcript in the published analysis shape (docs/schema/analysis.md).

It cannot recognise speech. It knows what the demo and test videos say (scripts/make-samples.sh,
tests/support/media.cc) and finds *when* each sentence is spoken in the audio that `analyze`
hands on ({results.analyze.audio}, a 16 kHz mono WAV): the first to last loud frame inside each
slide. Its output, one per item:

    {"transcript": {"language": "en", "engine": "speech-standin",
                    "segments": [{"start": 0.52, "end": 2.91, "text": "...", "confidence": 1.0}]}}

    python3 speech_standin.py [--language en|zh-CN] [--load SECONDS] [--record FILE]

The script is chosen by the video's file name (sample-1 ... sample-3; anything else: the test
clip's two slides). --record FILE appends one JSON line per item (job, pid, segments) for tests.
Replace `setup` and `process` with whisper.cpp or faster-whisper (docs/steps/worker.md).
"""

import argparse
import array
import json
import os
import sys
import time
import wave

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import baton_worker  # noqa: E402

# (slide seconds, sentence): each sentence is spoken from 0.5 s into its slide.
SCRIPTS = {
    "en": {
        "sample-1": [(8, "Welcome to the quarterly results meeting."),
                     (8, "Revenue grew twelve percent this year."),
                     (8, "Next we will hire more engineers.")],
        "sample-2": [(10, "This talk is about garden planning."),
                     (10, "Plant tomatoes and peppers in the spring.")],
        "sample-3": [(6, "Good morning and welcome to safety training."),
                     (7, "Always wear your helmet on the site."),
                     (7, "Please report every accident to your manager.")],
        "": [(6, "Welcome to the quarterly results meeting."),
             (6, "Revenue grew twelve percent this year.")],
    },
    "zh-CN": {
        "": [(6, "大家好，欢迎参加季度报告会。今天我们回顾本季度的收入和利润。"),
             (6, "本季度收入增长了百分之十二。利润率也有所提高。")],
    },
}


def read_levels(path, frame=320):
    """Mean absolute level of each 20 ms frame of a 16-bit mono WAV."""
    with wave.open(path, "rb") as w:
        rate = w.getframerate()
        samples = array.array("h", w.readframes(w.getnframes()))
    if sys.byteorder == "big":
        samples.byteswap()
    levels = []
    for i in range(0, len(samples), frame):
        chunk = samples[i:i + frame]
        levels.append(sum(abs(s) for s in chunk) / max(1, len(chunk)))
    return levels, frame / float(rate)


def segments_for(audio, script):
    levels, step = read_levels(audio) if audio else ([], 0.02)
    peak = max(levels) if levels else 0
    loud = peak * 0.08
    out, start = [], 0.0
    for seconds, text in script:
        first = last = None
        lo, hi = int((start + 0.3) / step), int((start + seconds) / step)
        for k in range(lo, min(hi, len(levels))):
            if peak > 0 and levels[k] >= loud:
                first = k if first is None else first
                last = k
        if first is not None:  # the sentence's span in this audio
            out.append({"start": round(first * step, 2), "end": round((last + 1) * step, 2), "text": text,
                        "confidence": 1.0})
        start += seconds
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--language", default="en", choices=sorted(SCRIPTS))
    ap.add_argument("--load", type=float, default=0.0)
    ap.add_argument("--record", default="")
    args = ap.parse_args()

    def setup():
        time.sleep(args.load)  # a real model loads its weights here, once per worker
        return SCRIPTS[args.language]

    def process(scripts, items):
        results = []
        for it in items:
            analyze = it.get("results", {}).get("analyze", {})
            audio = analyze.get("audio")
            download = it.get("results", {}).get("download", {})
            name = os.path.splitext(os.path.basename(download.get("file") or it.get("input") or ""))[0]
            script = scripts.get(name, scripts[""])
            segments = segments_for(audio, script) if audio else []
            if args.record:
                with open(args.record, "a") as f:
                    f.write(json.dumps({"job": it["job"], "pid": os.getpid(), "audio": audio,
                                        "segments": len(segments)}) + "\n")
            results.append({"transcript": {"language": args.language, "engine": "speech-standin",
                                           "segments": segments}})
        return results

    baton_worker.serve(setup, process)


if __name__ == "__main__":
    main()
