"""One short clip from a cold start, PyTorch and ONNX side by side in one run (issue: ≤ 1.5 s end to end
for the ONNX route, the PyTorch one no slower than before):

- `sera predict --checkpoint CKPT clip` and `sera predict --onnx OUT clip`, each a fresh process,
  wall time end to end (median of a few runs; the export itself is not timed);
- the latency of a 4 s clip once each has started (median of repeats, in this process).

    python bench/startup.py --checkpoint runs/ravdess+emodb/checkpoint [--runs 5] [--quick]
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="2 runs each (CI)")
    args = ap.parse_args()
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
