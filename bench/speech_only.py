"""Does sera gain from seeing the speech alone? The trained version of bench/vad_pooling.py's probe
question (issue 17): sera cross-validated on whole clips against clips trimmed to their speech
before encoding (``vad.trim``), on the same folds and seeds, both test protocols scored from each
run. A difference is paired over seeds x folds: the mean gain, how many pairs gained, and a
two-sided sign-test p-value. Trimming also halves RAVDESS's frames: the stage timings say what
that saves.

    python bench/speech_only.py [--corpus ravdess] [--normalise none|speaker] [--seeds 3] [--quick]

Writes bench/results/speech_only[-quick].json; runs resume (bench/runs/speech-*).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapter import run  # noqa: E402
from common import save  # noqa: E402

VARIANTS = {  # name: settings
    "whole clips": {},
    "trimmed to speech": {"vad.trim": True},
}


def sign_test(gains: list[float]) -> float:
    """Two-sided sign-test p-value of paired gains (ties dropped)."""
    wins, losses = sum(g > 0 for g in gains), sum(g < 0 for g in gains)
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(wins, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired(base: dict, other: dict, protocol: str) -> dict:
    """``other`` minus ``base`` in UA over the (seed, fold) runs both have."""
    ua = lambda res: {(r["seed"], r["fold"]): r["metrics"][protocol]["ua"] for r in res["runs"]}  # noqa: E731
    a, b = ua(base), ua(other)
    gains = [b[k] - a[k] for k in sorted(a.keys() & b.keys())]
    return {"pairs": len(gains), "mean_gain": float(np.mean(gains)), "gained": sum(g > 0 for g in gains),
            "sign_test_p": sign_test(gains)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default="ravdess")
    ap.add_argument("--normalise", choices=("none", "speaker"), default="none",
                    help="none (default): the shipped, clip-protocol model; speaker: the speaker-protocol model")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="a few speakers, few epochs: checks the harness only")
    args = ap.parse_args()
    # seed by seed, both variants each time: a run stopped early still compares like with like
    for seeds in range(1, 1 + (1 if args.quick else args.seeds)):
        results = {}
        for name, settings in VARIANTS.items():
            settings = {**settings, "data.normalise": args.normalise}
            results[name] = run(args.corpus, settings, seeds, args.quick, f"speech-{name.split()[0]}-{args.normalise}")
            res = results[name]
            print(f"{name}, {seeds} seed(s): " + "; ".join(
                f"{p} protocol UA {100 * r['ua']['mean']:.1f} ± {100 * r['ua']['std']:.1f}" for p, r in res["protocols"].items())
                + f"; stage 1 {res['timing']['stage1_seconds_per_epoch']:.1f} s/epoch, "
                  f"stage 2 {res['timing']['stage2_seconds_per_epoch']:.1f} s/epoch", flush=True)
        base = results["whole clips"]
        comparisons = {f"{name} - whole clips": {p: paired(base, res, p) for p in ("clip", "speaker")}
                       for name, res in results.items() if name != "whole clips"}
        for name, by in comparisons.items():
            for p, c in by.items():
                print(f"{name}, {p} protocol: {100 * c['mean_gain']:+.1f} UA, {c['gained']}/{c['pairs']} pairs gained, "
                      f"sign test p = {c['sign_test_p']:.2f}", flush=True)
        save(f"speech_only{'-quick' if args.quick else ''}",
             {"corpus": args.corpus, "normalise": args.normalise, "variants": results, "paired": comparisons})


if __name__ == "__main__":
    main()
