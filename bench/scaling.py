"""Prediction speed and memory against audio length: a 4 s clip, then 10 s, 1 min and 10 min
recordings made by concatenating RAVDESS clips. Each length runs in a fresh process so its peak
memory is its own; the bare encoder runs over the same pieces in the same process, and the voice
activity detector (which finds those pieces) is timed on its own beside it.

    python bench/scaling.py --checkpoint runs/ravdess+emodb/checkpoint [--quick]

Writes bench/results/scaling.json. Time should grow linearly with the length and peak memory stay
flat, since `Predictor` encodes and classifies one piece at a time. Goal: the VAD under 5% of the
encoder's time.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import save, upstream  # noqa: E402

LENGTHS = [4.0, 10.0, 60.0, 600.0]  # seconds
QUICK_LENGTHS = [4.0, 10.0, 30.0]


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def child(checkpoint: str, path: str, repeats: int) -> dict:
    """Runs in its own process: load, predict ``repeats`` times, then the bare encoder on the same pieces."""
    import torch

    from sera.predict import Predictor
    from sera.vad import regions, speech_probabilities

    torch.set_num_threads(min(2, torch.get_num_threads()))
    t = time.perf_counter()
    predictor = Predictor(checkpoint)
    load = time.perf_counter() - t
    base = rss_mb()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        pred = predictor.predict_file(path)
        times.append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    wave = predictor._load(path)
    _, spans, *_ = predictor._spans(wave, 16_000, path)  # the pieces predict scores
    in_memory, encoder, vad = [], [], []
    for _ in range(repeats):  # the same, audio already decoded: VAD + encoder + adapter + head
        t = time.perf_counter()
        predictor.predict_wave(wave)
        in_memory.append(time.perf_counter() - t)
        t = time.perf_counter()
        with torch.inference_mode():
            for a, b in spans:
                predictor.encoder([wave[a:b]])
        encoder.append(time.perf_counter() - t)
        t = time.perf_counter()
        regions(speech_probabilities(wave), wave.size / 16_000, predictor.vad)
        vad.append(time.perf_counter() - t)
    return {"seconds": wave.size / 16_000, "windows": len(pred.windows),
            "encoded_seconds": sum(b - a for a, b in spans) / 16_000, "startup_seconds": load,
            "predict_seconds": statistics.median(times), "predict_in_memory_seconds": statistics.median(in_memory),
            "encoder_seconds": statistics.median(encoder), "vad_seconds": statistics.median(vad),
            "rss_after_load_mb": base, "peak_rss_mb": peak}


def recording(clips: list[Path], seconds: float, out: Path) -> Path:
    """Corpus clips end to end until ``seconds`` long (the clips repeat when there are too few)."""
    parts, total, i = [], 0, 0
    while total < seconds * 16_000:
        wave, sr = sf.read(str(clips[i % len(clips)]), dtype="float32")
        assert sr == 16_000, clips[i % len(clips)]
        parts.append(wave)
        total += wave.size
        i += 1
    path = out / f"recording-{int(seconds)}s.flac"
    sf.write(str(path), np.concatenate(parts)[: int(seconds * 16_000)], 16_000)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="runs/ravdess+emodb/checkpoint")
    ap.add_argument("--quick", action="store_true", help="4, 10 and 30 s only (CI)")
    ap.add_argument("--child", nargs=2, metavar=("CHECKPOINT", "FILE"), help=argparse.SUPPRESS)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.repeats)))
        return

    from sera.config import SeraConfig

    if not (Path(args.checkpoint) / "config.json").is_file():
        sys.exit(f"no checkpoint at {args.checkpoint}: run `make reproduce` first, or give --checkpoint")
    clips = sorted((Path(SeraConfig().data.root) / "ravdess").rglob("*.flac"))
    if not clips:
        sys.exit("no RAVDESS clips under SERA_DATA")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seconds in QUICK_LENGTHS if args.quick else LENGTHS:
            path = recording(clips, seconds, Path(tmp))
            repeats = args.repeats if seconds <= 60 else 1
            out = subprocess.run([sys.executable, __file__, "--child", args.checkpoint, str(path),
                                  "--repeats", str(repeats)], capture_output=True, text=True, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rest = row["predict_in_memory_seconds"] - row["encoder_seconds"] - row["vad_seconds"]
            row["adapter_share_of_encoder"] = rest / row["encoder_seconds"]
            row["vad_share_of_encoder"] = row["vad_seconds"] / row["encoder_seconds"]
            rows.append(row)
            print(f"{seconds:6.0f} s: predict {row['predict_seconds']:.3f} s from the file, {row['predict_in_memory_seconds']:.3f} s "
                  f"decoded (encoder {row['encoder_seconds']:.3f} s over {row['encoded_seconds']:.0f} s of pieces, "
                  f"VAD {100 * row['vad_share_of_encoder']:.1f}% of it, adapter + head {100 * row['adapter_share_of_encoder']:.0f}%), "
                  f"{row['windows']} pieces, peak RSS {row['peak_rss_mb']:.0f} MB "
                  f"(after load {row['rss_after_load_mb']:.0f} MB)", flush=True)
        short = recording(clips, 4.0, Path(tmp))
        cli = Path(sys.executable).parent / "sera"
        walls = []
        for _ in range(3):  # `sera predict` as a user runs it: process start, imports and model load included
            t = time.perf_counter()
            subprocess.run([str(cli), "predict", "--checkpoint", args.checkpoint, str(short)], capture_output=True,
                           check=True)
            walls.append(time.perf_counter() - t)
    encoder = json.loads((Path(args.checkpoint) / "config.json").read_text())["encoder"]["name"]
    result = {"checkpoint": args.checkpoint, "encoder": upstream(encoder), "quick": args.quick, "rows": rows,
              "cli_predict_4s_seconds_with_start": statistics.median(walls)}
    print(f"sera predict on a 4 s clip, process start included: {result['cli_predict_4s_seconds_with_start']:.2f} s")
    print(save("scaling-quick" if args.quick else "scaling", result))


if __name__ == "__main__":
    main()
