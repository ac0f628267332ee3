"""Does a linear probe inside sera pay (``model.probe_weight``, sera/model/probe.py)? On raw
whisper-base features the probe baseline beat sera's head on unseen speakers (RAVDESS 74.3
against 69.3 UA), so sera averages the two's probabilities.

Each seed and fold trains sera once; the SAP head alone (weight 0), the probe alone (weight 1,
the probe baseline fitted on the same speakers) and their average at each weight between are
scored from that one model: on the validation speakers (the probe fitted beside the head on the
other training speakers), which choose the weight, and on the test fold (the probe refitted on
every training speaker), read once at the chosen weight. Gains are paired over seeds x folds
(mean, how many gained, two-sided sign test).

    python bench/probe_fusion.py [--parts ravdess,emodb,cross] [--normalise none|speaker] [--seeds 3] [--jobs 2] [--quick]

Writes bench/results/probe_fusion[-quick].json (each part merged in as it ends); runs resume
under bench/runs/.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapter import config, state_dir, summarise  # noqa: E402
from common import RESULTS, save  # noqa: E402
from speech_only import sign_test  # noqa: E402

from sera.evaluate import cross_validate  # noqa: E402
from sera.pipeline import corpus_and_folds, cross_corpus, features, unlabelled_features  # noqa: E402

WEIGHT = {"model.probe_weight": 0.5}  # any weight > 0 adds the probe; every weight is scored from the same runs


def choose(res: dict) -> dict:
    """The weight with the best mean validation UA (the smaller on a tie: less of the probe), its test
    figures, and its gain over the head alone paired over seeds x folds."""
    val = res["val_fusion"]
    best = max(val, key=lambda w: (round(val[w], 6), -float(w)))
    out = {"chosen_weight": float(best), "val_fusion": val, "test_fusion": res["test_fusion"], "vs_head": {},
           "vs_probe": {}}
    for p, curve in res["test_fusion"].items():
        out[p] = curve[best]
        for name, other in (("vs_head", "0"), ("vs_probe", "1")):
            gains = [r["test_fusion"][p][best] - r["test_fusion"][p][other] for r in res["runs"]]
            out[name][p] = {"pairs": len(gains), "mean_gain": float(np.mean(gains)),
                            "gained": sum(g > 0 for g in gains), "sign_test_p": sign_test(gains)}
    return out


def part(res: dict, settings: dict, cfg, start: float) -> dict:
    return {**summarise(res, settings, cfg, start), **choose(res),
            "fold_curves": [{"seed": r["seed"], "fold": r["fold"], "val": r["val_fusion"], "test": r["test_fusion"]}
                            for r in res["runs"]]}


def within(corpus_name: str, settings: dict, seeds: int, quick: bool, tag: str) -> dict:
    cfg = config(corpus_name, settings, seeds, quick)
    corpus, folds = corpus_and_folds(cfg)
    folds = folds[:2] if quick else folds
    fs, _ = features(corpus, cfg)
    t = time.perf_counter()
    res = cross_validate(fs, corpus, folds, cfg, unlabelled=unlabelled_features(cfg),
                         state=state_dir(f"probe-{corpus_name}-{tag}", quick))
    return part(res, settings, cfg, t)


def across(source: str, target: str, settings: dict, seeds: int, quick: bool, tag: str) -> dict:
    settings = {"data.test_corpus": target, **settings}
    cfg = config(source, settings, seeds, quick)
    corpus, folds, fs = cross_corpus(cfg)
    t = time.perf_counter()
    res = cross_validate(fs, corpus, folds, cfg, state=state_dir(f"probe-cross-{source}-{target}-{tag}", quick))
    return part(res, settings, cfg, t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="ravdess,emodb,cross")
    ap.add_argument("--normalise", choices=("none", "speaker"), default="none",
                    help="none: the shipped model (clip protocol = speaker protocol)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=1, help="folds trained at once (train.jobs)")
    ap.add_argument("--quick", action="store_true", help="a few speakers, few epochs: checks the harness only")
    args = ap.parse_args()
    settings = {**WEIGHT, "data.normalise": args.normalise, "train.jobs": args.jobs}
    path = RESULTS / f"probe_fusion{'-quick' if args.quick else ''}.json"
    for name in args.parts.split(","):
        if name == "cross":
            done = {f"{a} -> {b}": across(a, b, settings, args.seeds, args.quick, args.normalise)
                    for a, b in (("ravdess", "emodb"), ("emodb", "ravdess"))}
        else:
            done = {name: within(name, settings, args.seeds, args.quick, args.normalise)}
        old = json.loads(path.read_text()) if path.is_file() else {}
        parts = {**old.get("parts", {}), **{f"{k} ({args.normalise})": v for k, v in done.items()}}
        print(save(path.stem, {"parts": parts}), flush=True)
        for k, v in done.items():
            print(f"{k}: weight {v['chosen_weight']:g} on validation {v['val_fusion']}; test clip UA "
                  f"{100 * v['clip']['mean']:.1f} ± {100 * v['clip']['std']:.1f}, vs head {v['vs_head']['clip']}, "
                  f"vs probe {v['vs_probe']['clip']}", flush=True)


if __name__ == "__main__":
    main()
