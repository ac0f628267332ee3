"""Does a linear probe inside sera pay (``model.probe_weight``, sera/model/probe.py)? On raw
whisper-base features the probe baseline beat sera's head on unseen speakers (RAVDESS 74.3
against 69.3 UA), so sera averages the two's probabilities.

Each seed and fold trains sera once; the SAP head alone (weight 0), the probe alone (weight 1,
the probe baseline fitted on the same speakers) and their average at each weight between are
scored from that one model, on the validation speakers (the probe fitted beside the head on the
other training speakers) and on the test fold (the probe refitted on every training speaker).
The headline is the weight set beforehand (0.5); what validation would pick is recorded beside
it (``choose`` says why it is not used). Gains are paired over seeds x folds (mean, how many
gained, two-sided sign test).

    python bench/probe_fusion.py [--parts ravdess,emodb,cross,ablations,emobox] [--normalise none|speaker] [--seeds 3] [--jobs 2] [--quick]
    python bench/probe_fusion.py --parts ravdess,emodb --residual   # the head as a correction of the probe
    python bench/probe_fusion.py --parts cross --train-augment noise,telephone,room   # the travel preset's copies
    python bench/probe_fusion.py --parts cross --train-augment "noise|telephone" --train-copies swap   # one copy each
    python bench/probe_fusion.py --parts ravdess+emodb --balance corpus   # make reproduce's corpus, balanced
    python bench/probe_fusion.py --parts emodb,cross --normalise speaker --stats-dropout 0.5   # statistics of any size
    python bench/probe_fusion.py --parts cross --normalise speaker --stats-dropout 0.5 --probe-view reference
    python bench/probe_fusion.py --summarise   # recompute every part's figures from its fold curves

Writes bench/results/probe_fusion[-quick].json (each part merged in as it ends) and, for the
``ablations`` part (the method's parts removed one at a time on RAVDESS, head alone and with the
probe, paired with the full method), ablations-NORMALISE[-quick].json; runs resume under bench/runs/.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapter import ABLATIONS, cross_validated, summarise, transferred  # noqa: E402
from common import RESULTS, paired_gains, paired_runs, save  # noqa: E402

from sera.config import NORMALISATIONS, SeraConfig  # noqa: E402


WEIGHT = {"model.probe_weight": 0.5}  # any weight > 0 adds the probe; every weight is scored from the same runs


def choose(runs: list[dict], weight: float) -> dict:
    """From each run's validation and test curves (``fold_curves``): the test UA at every weight (mean ±
    std over seeds of the fold means), the gains of ``weight`` over the head alone and over the probe
    alone paired over seeds x folds, and the weight validation would pick with its test UA.

    The validation curve leans towards the head: its epoch was chosen on those same speakers, and the
    probe there is fitted without them. So the weight is set beforehand (0.5, equal shares) and the
    validation pick is recorded beside it."""
    w = f"{weight:g}"
    seeds = sorted({r["seed"] for r in runs})
    protocols = list(runs[0]["test"])
    weights = list(runs[0]["val"])

    def test_ua(p: str, at: str) -> dict:
        per_seed = [float(np.mean([r["test"][p][at] for r in runs if r["seed"] == s])) for s in seeds]
        return {"mean": float(np.mean(per_seed)), "std": float(np.std(per_seed))}

    def gains(p: str, other: str) -> dict:
        return paired_gains([r["test"][p][w] - r["test"][p][other] for r in runs])

    val = {k: float(np.mean([r["val"][k] for r in runs])) for k in weights}
    pick = max(weights, key=lambda k: (round(val[k], 6), -float(k)))  # a tie goes to less of the probe
    return {"weight": weight, "val_fusion": val, "test_fusion": {p: {k: test_ua(p, k) for k in weights} for p in protocols},
            "vs_head": {p: gains(p, "0") for p in protocols}, "vs_probe": {p: gains(p, "1") for p in protocols},
            "validation_pick": {"weight": float(pick), **{p: test_ua(p, pick) for p in protocols}}}


def part(res: dict, settings: dict, cfg, start: float) -> dict:
    curves = [{"seed": r["seed"], "fold": r["fold"], "val": r["val_fusion"], "test": r["test_fusion"]} for r in res["runs"]]
    return {**summarise(res, settings, cfg, start), "fold_curves": curves, **choose(curves, cfg.model.probe_weight)}


def within(corpus_name: str, settings: dict, seeds: int, quick: bool, tag: str) -> dict:
    return part(*cross_validated(corpus_name, settings, seeds, quick, f"probe-{corpus_name}-{tag}"))


def across(source: str, target: str, settings: dict, seeds: int, quick: bool, tag: str) -> dict:
    return part(*transferred(source, target, settings, seeds, quick, f"probe-cross-{source}-{target}-{tag}"))


def ablations(settings: dict, seeds: int, quick: bool, tag: str, name: str) -> dict:
    """The method's parts removed one at a time on RAVDESS, in the protocol ``settings`` train for. Each
    variant is scored as the head alone (weight 0: the method's own parts) and with the probe (what ships),
    paired with the full method over seeds x folds. The full method is the ``ravdess`` part's own run."""
    table: dict[str, dict] = {}
    w = f"{settings['model.probe_weight']:g}"
    ua = lambda part, p, at: {(r["seed"], r["fold"]): r["test"][p][at] for r in part["fold_curves"]}  # noqa: E731
    for variant, change in ABLATIONS.items():
        if "data.normalise" in change:  # the protocol's choice here, set by --normalise
            continue
        slug = "" if not change else "-" + variant.replace(" ", "-")
        part = table[variant] = within("ravdess", {**settings, **change}, seeds, quick, tag + slug)
        if change:
            full = table["full method"]
            protocols = part["fold_curves"][0]["test"]
            part["vs_full"] = {at: {p: paired_runs(ua(full, p, at), ua(part, p, at)) for p in protocols} for at in ("0", w)}
        save(name, {"normalise": settings["data.normalise"], "weight": float(w), "variants": table})
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="ravdess,emodb,cross,ablations,emobox")
    ap.add_argument("--normalise", choices=NORMALISATIONS, default="none",
                    help="none: the shipped model (clip protocol = speaker protocol)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=1, help="folds trained at once (train.jobs)")
    ap.add_argument("--quick", action="store_true", help="a few speakers, few epochs: checks the harness only")
    ap.add_argument("--summarise", action="store_true", help="recompute the figures of the parts already saved")
    ap.add_argument("--residual", action="store_true",
                    help="model.residual_probe: the head learns a correction of a fixed probe (weight 0 is then both)")
    ap.add_argument("--train-augment", default="", help="train.finetune_augment: stage 2 and the probe also learn "
                    "from these augmented copies of the training clips (the travel preset's: noise,telephone,room)")
    ap.add_argument("--train-copies", choices=("add", "swap"), default="add", help="train.finetune_copies: the "
                    "copies added to the clips, or each epoch reading each clip as itself or one of its copies")
    ap.add_argument("--balance", choices=("corpus", "speaker"), help="train.balance: each corpus (or speaker) "
                    "weighs the same in stage 2's loss")
    ap.add_argument("--stats-dropout", type=float, default=0.0, help="train.stats_dropout (with --normalise "
                    "speaker): each training clip standardised with the reference in this share of draws, else with "
                    "a random subset of its speaker's clips")
    ap.add_argument("--probe-view", choices=("speaker", "reference"), default="speaker", help="model.probe_view (with "
                    "--normalise speaker): the probe fitted on each speaker's statistics, or on the reference's")
    args = ap.parse_args()
    settings = {**WEIGHT, "data.normalise": args.normalise, "train.jobs": args.jobs}
    labels = [args.normalise]  # name the parts' rows, "ravdess (none, residual)", and their runs, "...-none-residual"
    if args.residual:
        settings, labels = {**settings, "model.residual_probe": True}, labels + ["residual"]
    if args.train_augment:
        settings = {**settings, "train.finetune_augment": args.train_augment}
        labels.append(args.train_augment.replace(",", "+").replace("|", " or "))
    if args.train_copies != "add":
        settings, labels = {**settings, "train.finetune_copies": args.train_copies}, labels + ["swapped"]
    if args.stats_dropout:
        settings = {**settings, "train.stats_dropout": args.stats_dropout}
        labels.append(f"stats dropout {args.stats_dropout:g}")
    if args.probe_view != "speaker":
        settings, labels = {**settings, "model.probe_view": args.probe_view}, labels + ["probe on the reference"]
    if args.balance:
        settings, labels = {**settings, "train.balance": args.balance}, labels + [f"balanced by {args.balance}"]
    tag = "-".join(labels).replace(" ", "-")
    path = RESULTS / f"probe_fusion{'-quick' if args.quick else ''}.json"
    if args.summarise:
        saved = json.loads(path.read_text())
        for p in saved["parts"].values():
            for stale in ("chosen_weight", "clip", "speaker"):  # written by the first version of this script
                p.pop(stale, None)
            p.update(choose(p["fold_curves"], p["settings"]["model.probe_weight"]))
        print(save(path.stem, {"parts": saved["parts"]}), flush=True)
        return
    for name in args.parts.split(","):
        if name == "ablations":
            ablations(settings, args.seeds, args.quick, tag, f"ablations-{tag}{'-quick' if args.quick else ''}")
            continue
        if name == "emobox":  # RAVDESS on EmoBox's own 6 actor-disjoint folds, as the baselines' table has them
            folds = Path(SeraConfig().data.root).parent / "folds" / "emobox-ravdess.json"
            if args.quick or not folds.is_file():  # they need every RAVDESS actor (baselines.py skips them alike)
                continue
            done = {"ravdess, EmoBox folds": part(*cross_validated("ravdess", {**settings, "data.folds": str(folds)},
                                                                   args.seeds, args.quick, f"probe-emobox-{tag}"))}
        elif name == "cross":
            done = {f"{a} -> {b}": across(a, b, settings, args.seeds, args.quick, tag)
                    for a, b in (("ravdess", "emodb"), ("emodb", "ravdess"))}
        else:
            done = {name: within(name, settings, args.seeds, args.quick, tag)}
        old = json.loads(path.read_text()) if path.is_file() else {}
        parts = {**old.get("parts", {}), **{f"{k} ({', '.join(labels)})": v for k, v in done.items()}}
        print(save(path.stem, {"parts": parts}), flush=True)
        for k, v in done.items():
            print(f"{k}: test clip UA at weight {v['weight']:g} {100 * v['ua']['mean']:.1f} ± {100 * v['ua']['std']:.1f}, "
                  f"vs head {v['vs_head']['clip']}, vs probe {v['vs_probe']['clip']}; validation would pick "
                  f"{v['validation_pick']['weight']:g} (validation UA by weight {v['val_fusion']})", flush=True)


if __name__ == "__main__":
    main()
