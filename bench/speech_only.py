"""Does sera gain from seeing the speech alone? The trained version of bench/vad_pooling.py's probe
question (issue 17): sera cross-validated on whole clips against clips trimmed to their speech
before encoding (``vad.trim``), on the same folds and seeds, both test protocols scored from each
run. A difference is paired over seeds x folds: the mean gain, how many pairs gained, and a
two-sided sign-test p-value. Trimming also halves RAVDESS's frames: the stage timings say what
that saves.

    python bench/speech_only.py [--corpus ravdess] [--normalise none|speaker] [--seeds 3] [--variants whole,trimmed,sap]
                                [--quick]

Writes bench/results/speech_only[-quick].json; runs resume (bench/runs/speech-*). Variants may run in
separate processes (one core each): each merges its part into the file under a lock, with the code
it ran, and the pairs are recomputed from every part the file holds.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapter import run  # noqa: E402
from common import RESULTS, save  # noqa: E402

from sera.provenance import code_version  # noqa: E402

VARIANTS = {  # name: (short name for --variants and the run folder, settings)
    "whole clips": ("whole", {}),
    "trimmed to speech": ("trimmed", {"vad.trim": True}),
    "SAP over speech frames": ("sap", {"vad.pool_speech": True}),
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


def merge(path: Path, corpus: str, normalise: str, name: str, part: dict) -> dict:
    """Add one variant's part to the results file (others' parts kept) and pair every variant with whole clips."""
    from filelock import FileLock

    with FileLock(str(path) + ".lock"):
        old = json.loads(path.read_text()) if path.is_file() else {}
        same = old.get("corpus") == corpus and old.get("normalise") == normalise
        variants = {**(old.get("variants", {}) if same else {}), name: part}
        variants = {k: variants[k] for k in VARIANTS if k in variants}  # table order
        base = variants.get("whole clips")
        comparisons = {f"{k} - whole clips": {p: paired(base, res, p) for p in ("clip", "speaker")}
                       for k, res in variants.items() if k != "whole clips" and base is not None}
        save(path.stem, {"corpus": corpus, "normalise": normalise, "variants": variants, "paired": comparisons})
    return comparisons


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default="ravdess")
    ap.add_argument("--normalise", choices=("none", "speaker"), default="none",
                    help="none (default): the shipped, clip-protocol model; speaker: the speaker-protocol model")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="a few speakers, few epochs: checks the harness only")
    ap.add_argument("--variants", default=",".join(short for short, _ in VARIANTS.values()),
                    help="which variants this process runs (" + ", ".join(f"{s}: {n}" for n, (s, _) in VARIANTS.items()) + ")")
    args = ap.parse_args()
    chosen = {n: v for n, v in VARIANTS.items() if v[0] in args.variants.split(",")}
    path = RESULTS / f"speech_only{'-quick' if args.quick else ''}.json"
    # seed by seed, every chosen variant each time: a run stopped early still compares like with like
    for seeds in range(1, 1 + (1 if args.quick else args.seeds)):
        for name, (short, settings) in chosen.items():
            settings = {**settings, "data.normalise": args.normalise}
            res = run(args.corpus, settings, seeds, args.quick, f"speech-{short}-{args.normalise}")
            res["code"] = code_version()  # parts may come from different commits: each says which
            print(f"{name}, {seeds} seed(s): " + "; ".join(
                f"{p} protocol UA {100 * r['ua']['mean']:.1f} ± {100 * r['ua']['std']:.1f}" for p, r in res["protocols"].items())
                + f"; stage 1 {res['timing']['stage1_seconds_per_epoch']:.1f} s/epoch, "
                  f"stage 2 {res['timing']['stage2_seconds_per_epoch']:.1f} s/epoch", flush=True)
            for pair, by in merge(path, args.corpus, args.normalise, name, res).items():
                for p, c in by.items():
                    print(f"{pair}, {p} protocol: {100 * c['mean_gain']:+.1f} UA, {c['gained']}/{c['pairs']} pairs "
                          f"gained, sign test p = {c['sign_test_p']:.2f}", flush=True)


if __name__ == "__main__":
    main()
