"""One short clip from a cold start, PyTorch and ONNX side by side in one run (issue: ≤ 1.5 s end to end
for the ONNX route, the PyTorch one no slower than before):

- `sera predict --checkpoint CKPT clip` and `sera predict --onnx OUT clip`, each a fresh process,
  wall time end to end (median of a few runs; the export itself is not timed);
- the latency of a 4 s clip once each has started (median of repeats, in this process).

    python bench/startup.py --checkpoint runs/ravdess+emodb/checkpoint [--runs 5] [--quick]
    python bench/startup.py --reproduce   # the README's main job from a clean clone, timed (about 17 min)

``--reproduce`` clones this commit beside the checkout (where ``../shared`` is found, as in a fresh
checkout), then runs ``make install`` (a new virtual environment) and ``make reproduce`` (an empty
feature cache) as a newcomer would, without any ``SERA_*`` setting of this shell; it writes
``reproduce-time.json``. pip's download cache is as the machine holds it (CI's is warm too).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import RUNS, save  # noqa: E402

from sera.audio import load_audio  # noqa: E402
from sera.config import SeraConfig  # noqa: E402


def end_to_end(args: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "sera.cli", "predict", *args], check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def after_start(predict, wave: np.ndarray, repeats: int) -> float:
    predict(wave)  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        predict(wave)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def reproduce_from_clean_clone() -> dict:
    """Wall time of ``make install`` and ``make reproduce`` in a fresh clone, and the figure the job reports."""
    root = Path(__file__).resolve().parent.parent
    clone = root.parent / "sera-reproduce-timing"
    shutil.rmtree(clone, ignore_errors=True)
    subprocess.run(["git", "clone", "-q", str(root), str(clone)], check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True).stdout.strip()
    venv = Path(sys.prefix) / "bin"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERA_") and k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if Path(p) != venv)
    seconds = {}
    with open(RUNS / "reproduce-time.log", "w") as log:
        for target in ("install", "reproduce"):
            t = time.perf_counter()
            subprocess.run(["make", target], cwd=clone, env=env, check=True, stdout=log, stderr=subprocess.STDOUT)
            seconds[target] = time.perf_counter() - t
    results = json.loads((clone / "runs" / "ravdess+emodb" / "results.json").read_text())
    out = {"cloned_commit": commit, "seconds": seconds, "minutes_total": sum(seconds.values()) / 60, "ua_clip": results["ua"],
           "protocol": results.get("protocol"), "corpus": results.get("corpus"), "log": str(RUNS / "reproduce-time.log")}
    kept = RUNS / "reproduce-checkpoint"  # what a newcomer's make reproduce ships: --checkpoint for the timing above
    shutil.rmtree(kept, ignore_errors=True)
    shutil.copytree(clone / "runs" / "ravdess+emodb" / "checkpoint", kept)
    shutil.rmtree(clone, ignore_errors=True)
    return {**out, "checkpoint": str(kept)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="2 runs each (CI)")
    ap.add_argument("--reproduce", action="store_true", help="time make install + make reproduce from a clean clone")
    args = ap.parse_args()
    if args.reproduce:
        result = reproduce_from_clean_clone()
        save("reproduce-time", result)
        s = result["seconds"]
        print(f"make install {s['install'] / 60:.1f} min, make reproduce {s['reproduce'] / 60:.1f} min: "
              f"{result['minutes_total']:.1f} min from a clean clone; UA {100 * result['ua_clip']['mean']:.1f}")
        return
    if not args.checkpoint:
        ap.error("--checkpoint is needed (or --reproduce)")
    runs = 2 if args.quick else args.runs
    from sera.export import export_onnx
    from sera.onnx_predict import OnnxPredictor
    from sera.predict import Predictor

    onnx = export_onnx(args.checkpoint, RUNS / ("onnx-quick" if args.quick else "onnx"))
    clip = Path(SeraConfig().data.root) / "ravdess/Actor_20/03-01-05-02-01-01-20.flac"
    wave = np.resize(load_audio(clip), 4 * 16_000)  # exactly 4 s
    torch_predictor, onnx_predictor = Predictor(args.checkpoint, device="cpu"), OnnxPredictor(onnx)
    result = {
        "clip": str(clip), "encoder": torch_predictor.meta["encoder"]["name"],
        "end_to_end_seconds": {"pytorch": end_to_end(["--checkpoint", args.checkpoint, str(clip)], runs),
                               "onnx": end_to_end(["--onnx", str(onnx), str(clip)], runs)},
        "latency_4s_seconds": {"pytorch": after_start(torch_predictor.predict_wave, wave, 3 * runs),
                               "onnx": after_start(onnx_predictor.predict_wave, wave, 3 * runs)},
        "runs": runs,
    }
    save("startup-quick" if args.quick else "startup", result)
    e, lat = result["end_to_end_seconds"], result["latency_4s_seconds"]
    print(f"sera predict, one clip, end to end: PyTorch {e['pytorch']:.2f} s, ONNX {e['onnx']:.2f} s; "
          f"4 s clip after start-up: PyTorch {lat['pytorch'] * 1000:.0f} ms, ONNX {lat['onnx'] * 1000:.0f} ms")


if __name__ == "__main__":
    main()
