"""Does sera gain from seeing the speech alone? The trained version of bench/vad_pooling.py's probe
question (issue 17): sera cross-validated on whole clips against clips trimmed to their speech
before encoding (``vad.trim``), on the same folds and seeds, both test protocols scored from each
run. A difference is paired over seeds x folds: the mean gain, how many pairs gained, and a
two-sided sign-test p-value. Trimming also halves RAVDESS's frames: the stage timings say what
that saves.

    python bench/speech_only.py [--corpus ravdess] [--normalise none|speaker] [--seeds 3] [--first-seed 0]
                                [--variants whole,trimmed,sap] [--quick]

Writes bench/results/speech_only[-quick].json; runs resume (bench/runs/speech-*). Variants, and seeds
(``--first-seed 2 --seeds 3``: seed 2 alone), may run in separate processes (one core each): each
merges its runs into its variant's part under a lock, with the code they ran (a seed run again replaces
its old runs), and the figures and pairs are recomputed from every run the file holds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapter import run  # noqa: E402
from common import RESULTS, paired_runs, save  # noqa: E402

from sera.config import NORMALISATIONS  # noqa: E402


VARIANTS = {  # name: (short name for --variants and the run folder, settings)
    "whole clips": ("whole", {}),
    "trimmed to speech": ("trimmed", {"vad.trim": True}),
    "SAP over speech frames": ("sap", {"vad.pool_speech": True}),
}


def paired(base: dict, other: dict, protocol: str) -> dict:
    """``other`` minus ``base`` in UA over the (seed, fold) runs both have."""
    ua = lambda res: {(r["seed"], r["fold"]): r["metrics"][protocol]["ua"] for r in res["runs"]}  # noqa: E731
    return paired_runs(ua(base), ua(other))


def _codes(part: dict) -> list[dict]:
    code = part.get("code", [])
    return [code] if isinstance(code, dict) else list(code)


def combine(old: dict | None, new: dict) -> dict:
    """One variant's part from the runs of ``old`` and ``new`` (``new``'s where both ran a seed and fold):
    the figures recomputed as ``sera.evaluate`` makes them (a seed's figure is its folds' mean; mean and
    std over seeds), the codes of both where both count."""
    runs = {(r["seed"], r["fold"]): r for r in (old or {}).get("runs", [])}
    kept = len(runs)
    runs.update({(r["seed"], r["fold"]): r for r in new["runs"]})
    if old is None or kept == 0 or {(r["seed"], r["fold"]) for r in old["runs"]} <= {(r["seed"], r["fold"]) for r in new["runs"]}:
        return new
    runs = [runs[k] for k in sorted(runs)]
    seeds, folds = sorted({r["seed"] for r in runs}), [f["fold"] for f in new["per_fold"]]
    stat = lambda v: {"mean": float(np.mean(v)), "std": float(np.std(v))}  # noqa: E731
    protocols = {}
    for p in new["protocols"]:
        per_seed = [{"seed": s, **{k: float(np.mean([r["metrics"][p][k] for r in runs if r["seed"] == s]))
                                   for k in ("ua", "wa", "f1")}} for s in seeds]
        per_fold = [{"fold": f, **{k: stat([r["metrics"][p][k] for r in runs if r["fold"] == f]) for k in ("ua", "wa", "f1")}}
                    for f in folds]
        protocols[p] = {**{k: stat([x[k] for x in per_seed]) for k in ("ua", "wa", "f1")},
                        "per_seed": per_seed, "per_fold": per_fold}
    n_old, n_new = len(old["runs"]), len(new["runs"])
    timing = {k: (old["timing"][k] * n_old + v * n_new) / (n_old + n_new) if k.endswith("per_epoch") else v
              for k, v in new["timing"].items()}  # per-epoch costs averaged over runs; the rest is this process's
    made_by = [c for r in runs for c in ([r["code"]] if r.get("code") else _codes(old))]  # older parts: per part
    codes = [json.loads(c) for c in sorted({json.dumps(c, sort_keys=True) for c in made_by})]
    lead = new["protocol"]
    return {**new, **{k: protocols[lead][k] for k in ("ua", "wa", "f1", "per_seed", "per_fold")}, "protocols": protocols,
            "runs": runs, "seeds": len(seeds), "timing": timing, "code": codes,
            "best_epochs": [r.get("best_epoch") for r in runs], "val_ua": None, "merged_from_processes": True}


def merge(path: Path, corpus: str, normalise: str, name: str, part: dict) -> dict:
    """Add one variant's runs to the results file (other variants' parts and this one's other seeds kept)
    and pair every variant with whole clips."""
    from filelock import FileLock

    with FileLock(str(path) + ".lock"):
        old = json.loads(path.read_text()) if path.is_file() else {}
        same = old.get("corpus") == corpus and old.get("normalise") == normalise
        variants = old.get("variants", {}) if same else {}
        variants = {**variants, name: combine(variants.get(name), part)}
        variants = {k: variants[k] for k in VARIANTS if k in variants}  # table order
        base = variants.get("whole clips")
        comparisons = {f"{k} - whole clips": {p: paired(base, res, p) for p in ("clip", "speaker")}
                       for k, res in variants.items() if k != "whole clips" and base is not None}
        save(path.stem, {"corpus": corpus, "normalise": normalise, "variants": variants, "paired": comparisons})
    return comparisons


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default="ravdess")
    ap.add_argument("--normalise", choices=NORMALISATIONS, default="none",
                    help="none (default): the shipped, clip-protocol model; speaker: the speaker-protocol model")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0, help="run seeds from this one to --seeds - 1 (another process "
                    "runs the others)")
    ap.add_argument("--quick", action="store_true", help="a few speakers, few epochs: checks the harness only")
    ap.add_argument("--variants", default=",".join(short for short, _ in VARIANTS.values()),
                    help="which variants this process runs (" + ", ".join(f"{s}: {n}" for n, (s, _) in VARIANTS.items()) + ")")
    args = ap.parse_args()
    chosen = {n: v for n, v in VARIANTS.items() if v[0] in args.variants.split(",")}
    path = RESULTS / f"speech_only{'-quick' if args.quick else ''}.json"
    # seed by seed, every chosen variant each time: a run stopped early still compares like with like
    first = 0 if args.quick else args.first_seed
    for seeds in range(1, 1 + (1 if args.quick else args.seeds - first)):
        for name, (short, settings) in chosen.items():
            settings = {**settings, "data.normalise": args.normalise, **({"seed": first} if first else {})}
            res = run(args.corpus, settings, seeds, args.quick,
                      f"speech-{short}-{args.normalise}" + (f"-from{first}" if first else ""))
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
