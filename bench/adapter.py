"""sera's figures: RAVDESS (8 classes, 4 folds) and EmoDB (7 classes, 5 folds) with the full method
over several seeds, across corpora (train on one, test on the other, 6 shared emotions), the
ablation table on RAVDESS, seconds per epoch of both stages, and trainable parameters against
the encoder's.

    python bench/adapter.py [--parts ravdess,emodb,cross,ablations,final] [--seeds 3] [--ablation-seeds 3] [--quick]
    python bench/adapter.py --parts emodb,cross --normalise none

``--normalise none`` runs the corpus and cross-corpus parts without speaker normalisation (the
clip-protocol choice that `make reproduce` ships); their rows are named "... (no speaker norm)".

The "final" part times what `make reproduce` ends with, both stages on all RAVDESS speakers, in a
process of its own, and reports that process's peak memory beside the size of the features it holds.

Each part's runs keep their state under bench/runs/ (a rerun resumes) and its figures are merged
into bench/results/adapter.json and adapter.md as soon as the part ends.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import RESULTS, RUNS, save, upstream

from sera.config import ABLATIONS as config_ablations, NORMALISATIONS, SeraConfig
from sera.encoders import Encoder
from sera.evaluate import cross_validate
from sera.model import EmotionClassifier, TeacherStudent
from sera.normalise import normalise
from sera.pipeline import apply_quick, corpus_and_folds, cross_corpus, features, labelled_copies, unlabelled_features

ABLATIONS = {"full method": {}, **{name: settings for name, (_, settings) in config_ablations.items()}}


def config(corpus_name: str, settings: dict, seeds: int, quick: bool) -> SeraConfig:
    cfg = SeraConfig().updated({"data.corpus": corpus_name, "train.seeds": seeds, **settings})
    if quick:  # the harness end to end in seconds per run: the figures mean nothing
        cfg = apply_quick(cfg).updated({"train.pretrain_epochs": 1, "train.finetune_epochs": 3})
    return cfg


def state_dir(tag: str, quick: bool) -> Path:
    state = RUNS / f"{tag}{'-quick' if quick else ''}" / "state"
    if quick:  # a check of the harness starts from nothing; only real runs resume
        shutil.rmtree(state, ignore_errors=True)
    return state


def summarise(res: dict, settings: dict, cfg: SeraConfig, start: float) -> dict:
    summary = {k: res[k] for k in ("ua", "wa", "f1", "per_seed", "per_fold", "val_ua", "best_epochs", "timing", "labels",
                                   "protocol", "protocols")}
    runs = [{"seed": r["seed"], "fold": r["fold"],  # for comparisons paired over seeds x folds
             "metrics": {p: {k: m[k] for k in ("ua", "wa", "f1")} for p, m in r["metrics"].items()},
             "best_epoch": r["best_epoch"], "code": r.get("code")} for r in res["runs"]]
    return {**summary, "runs": runs, "settings": settings, "seeds": cfg.train.seeds,
            "upstream": upstream(cfg.encoder.name), "wall_minutes": (time.perf_counter() - start) / 60,
            "code": res["code"]}  # every code version its runs were made by (a resumed run may span commits)


UNNORMALISED = " (no speaker norm)"  # suffix of the parts run with --normalise none


def cross_validated(corpus_name: str, settings: dict, seeds: int, quick: bool, state: str) -> tuple:
    """sera cross-validated on ``corpus_name`` with ``settings``, resumable under bench/runs/STATE: the
    results, the settings, the config and when training began (what ``summarise`` takes)."""
    cfg = config(corpus_name, settings, seeds, quick)
    corpus, folds = corpus_and_folds(cfg)
    folds = folds[:1] if quick else folds  # one fold each checks the harness
    fs, _ = features(corpus, cfg)
    t = time.perf_counter()
    res = cross_validate(fs, corpus, folds, cfg, unlabelled=unlabelled_features(cfg, True, corpus),
                         state=state_dir(state, quick), copies=labelled_copies(cfg, corpus))
    return res, settings, cfg, t


def transferred(source: str, target: str, settings: dict, seeds: int, quick: bool, state: str) -> tuple:
    """The method trained on all of ``source`` (stage 1 on its audio, early stopping on its own held-out
    speakers) and tested once on all of ``target``, over the emotions both share: what
    ``sera evaluate --corpus SOURCE --test-corpus TARGET`` runs. Returns as ``cross_validated``."""
    settings = {"data.test_corpus": target, **settings}
    cfg = config(source, settings, seeds, quick)
    corpus, folds, fs = cross_corpus(cfg)
    t = time.perf_counter()
    res = cross_validate(fs, corpus, folds, cfg, state=state_dir(state, quick), copies=labelled_copies(cfg, corpus))
    return res, settings, cfg, t


def run(corpus_name: str, settings: dict, seeds: int, quick: bool, tag: str) -> dict:
    return summarise(*cross_validated(corpus_name, settings, seeds, quick, f"{corpus_name}-{tag}"))


def across(source: str, target: str, seeds: int, quick: bool, settings: dict) -> dict:
    tag = "-none" if settings.get("data.normalise") == "none" else ""
    return summarise(*transferred(source, target, settings, seeds, quick, f"cross-{source}-{target}{tag}"))


def final_training(epochs: int, quick: bool) -> dict:
    """Run in a child process (``--final-child``): nothing the parent holds counts towards its peak memory."""
    import resource

    from sera.pipeline import train_final

    cfg = config("ravdess", {}, 1, quick)
    corpus, _ = corpus_and_folds(cfg)
    fs = normalise(features(corpus, cfg, progress=False)[0], cfg.data.normalise)  # as `sera train`'s final model
    ended: dict[int, float] = {}  # stage -> when its last epoch ended

    def log(record: dict) -> None:
        ended[record["stage"]] = time.perf_counter()

    t0 = time.perf_counter()
    train_final(fs, cfg, len(corpus.labels), epochs, progress=False, log=log)
    return {"speakers": len(corpus.speakers), "utterances": len(fs), "stage1_epochs": cfg.train.pretrain_epochs,
            "stage2_epochs": epochs, "train_seconds": ended[2] - t0,
            "stage1_seconds_per_epoch": (ended[1] - t0) / cfg.train.pretrain_epochs,
            "stage2_seconds_per_epoch": (ended[2] - ended[1]) / epochs,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "features_mb": sum(f.numel() * f.element_size() for f in fs.feats) / 2**20}


def final(parts: dict, quick: bool) -> dict:
    from sera.pipeline import final_epochs

    best = parts.get("ravdess", {}).get("best_epochs") or [3 if quick else 12]
    cmd = [sys.executable, __file__, "--final-child", str(final_epochs(best))] + (["--quick"] if quick else [])
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])


def parameters(cfg: SeraConfig) -> dict:
    encoder = Encoder(cfg.encoder)
    L, D = encoder.num_layers, encoder.dim
    count = lambda m: sum(p.numel() for p in m.parameters() if p.requires_grad)  # noqa: E731
    return {"encoder": encoder.num_parameters(), "stage1_trainable": count(TeacherStudent(cfg.model, L, D)),
            "stage2_trainable": count(EmotionClassifier(cfg.model, L, D, 8))}


def markdown(r: dict) -> str:
    pct = lambda d: f"{100 * d['mean']:.1f} ± {100 * d['std']:.1f}"  # noqa: E731

    def by_protocol(k: str, v: dict, extra: str = "") -> list[str]:
        """One row per test protocol (clip first); parts from before both were scored have one row."""
        enc = v.get("upstream", "whisper-tiny.en")  # parts saved before the encoder was recorded ran on tiny.en
        protos = v.get("protocols") or {v.get("protocol", "speaker"): v}
        return [f"| {k} | {enc} | {p} | {v['seeds']} | {pct(m['ua'])} | {pct(m['wa'])} | {pct(m['f1'])} |{extra}"
                for p, m in sorted(protos.items(), key=lambda pm: pm[0] != "clip")]

    lines = ["# Adapter figures (`bench/adapter.py`)", "",
             f"Speaker-independent folds, this machine ({r['machine']['cpu_cores']} cores); commit {r['commit'][:10]}. "
             "UA / WA / macro-F1 in %, mean ± std over seeds, per test protocol (clip: each test clip alone, as "
             "`sera predict`; speaker: test speakers standardised with all their own clips). Rows marked "
             f"\"{UNNORMALISED.strip()}\" trained without speaker normalisation.", ""]
    main = [(k, v) for k, v in r.get("parts", {}).items() if k.removesuffix(UNNORMALISED) in ("ravdess", "emodb")]
    if main:
        lines += ["| corpus | encoder | protocol | seeds | UA | WA | macro-F1 | stage 1 s/epoch | stage 2 s/epoch |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for k, v in main:
            t = v["timing"]
            lines += by_protocol(k, v, f" {t['stage1_seconds_per_epoch']:.1f} | {t['stage2_seconds_per_epoch']:.1f} |")
    cross = r.get("parts", {}).get("cross")
    if cross:
        lines += ["", "Across corpora (6 shared emotions; trained on all of the first, tested on all of the second):", "",
                  "| direction | encoder | protocol | seeds | UA | WA | macro-F1 |", "|---|---|---|---|---|---|---|"]
        for k, v in cross.items():
            lines += by_protocol(k, v)
    abl = r.get("parts", {}).get("ablations")
    if abl:
        lines += ["", "Ablations on RAVDESS (8 classes, 4 folds):", "", "| variant | seeds | UA | WA | macro-F1 |",
                  "|---|---|---|---|---|"]
        lines += [f"| {k} | {v['seeds']} | {pct(v['ua'])} | {pct(v['wa'])} | {pct(v['f1'])} |" for k, v in abl.items()]
    fin = r.get("parts", {}).get("final")
    if fin:
        lines += ["", f"Final model on all {fin['speakers']} RAVDESS speakers ({fin['utterances']} clips; stage 1 "
                  f"{fin['stage1_epochs']} epochs of {fin['stage1_seconds_per_epoch']:.1f} s, stage 2 {fin['stage2_epochs']} "
                  f"of {fin['stage2_seconds_per_epoch']:.1f} s): {fin['train_seconds']:.0f} s, "
                  f"peak memory {fin['peak_rss_mb']:.0f} MB (its features take {fin['features_mb']:.0f} MB of it)."]
    if "parameters" in r:
        p = r["parameters"]
        lines += ["", f"Trainable parameters: stage 1 {p['stage1_trainable'] / 1e6:.2f} M, stage 2 "
                  f"{p['stage2_trainable'] / 1e6:.2f} M; frozen encoder {p['encoder'] / 1e6:.1f} M "
                  f"({100 * p['stage2_trainable'] / p['encoder']:.0f}% of it)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--parts", default="ravdess,emodb,cross,ablations,final")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--ablation-seeds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="a few speakers, few epochs: checks the harness only")
    ap.add_argument("--normalise", choices=NORMALISATIONS, default="speaker",
                    help="data.normalise of the ravdess, emodb and cross parts")
    ap.add_argument("--jobs", type=int, default=1, help="folds trained at once, a process each (train.jobs; the "
                    "per-epoch timings are then those of one core per fold)")
    ap.add_argument("--final-child", type=int, metavar="EPOCHS", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.final_child:
        print(json.dumps(final_training(args.final_child, args.quick)), flush=True)
        return
    name = "adapter-quick" if args.quick else "adapter"
    path = RESULTS / f"{name}.json"
    result = json.loads(path.read_text()) if path.is_file() and not args.quick else {}  # a harness check starts afresh
    parts = result.get("parts", {})
    def publish() -> None:  # after every run, so that a stopped benchmark keeps what it measured
        saved = save(name, {"parts": parts, "parameters": parameters(SeraConfig())})
        (RESULTS / f"{name}.md").write_text(markdown(json.loads(saved.read_text())))

    unnormalised = args.normalise == "none"
    settings, suffix = ({"data.normalise": "none"}, UNNORMALISED) if unnormalised else ({}, "")
    if args.jobs > 1:
        settings = {**settings, "train.jobs": args.jobs}
    for part in args.parts.split(","):
        if part in ("ravdess", "emodb"):
            parts[part + suffix] = run(part, settings, args.seeds, args.quick, "full" + ("-none" if unnormalised else ""))
        elif part == "cross":
            table = parts.setdefault("cross", {})
            for a, b in (("ravdess", "emodb"), ("emodb", "ravdess")):
                table[f"{a} -> {b}{suffix}"] = across(a, b, args.seeds, args.quick, settings)
                publish()
        elif part == "ablations":
            table = parts.setdefault("ablations", {})
            for k, v in ABLATIONS.items():
                table[k] = run("ravdess", v, args.ablation_seeds, args.quick, "full" if not v else k.replace(" ", "-"))
                publish()
        elif part == "final":
            parts["final"] = final(parts, args.quick)
        else:
            raise SystemExit(f"unknown part {part!r}")
        publish()
    print((RESULTS / f"{name}.md").read_text(), flush=True)

if __name__ == "__main__":
    main()
