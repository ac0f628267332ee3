"""Stage 2 searched with Optuna on validation speakers only: is there a stage 2 whose head beats the probe?

Every trial trains each fold of ``make reproduce``'s corpus (RAVDESS + EmoDB, 9 classes, raw features,
the ``reproduce`` preset) and scores the validation speakers carved from that fold's training speakers
(``evaluate.fit_fold``, which has no code path to the test folds). The
objective is the SAP head alone's validation UA (the method). The shipped mix with the probe (weight 0.5)
and the probe alone are recorded beside it, from the same models.

The space, define-by-run:
- stage 1 on: the shipped recipe's adapter, trained once per fold before the trials and reused by
  every trial that keeps it. Its settings (learning rate, weight decay, dropout, size) stay the shipped
  ones, so what a trial measures is what the recipe would train;
- stage 1 off: the head's size (width, layers), learning rate, weight decay and dropout are searched too;
- always: frame masking, label smoothing, mixup, an average of the weights (``train.finetune_ema``),
  stochastic depth (``model.drop_path``), a speaker-adversarial branch (``train.speaker_adversary``),
  the head as a correction of a fixed probe (``model.residual_probe``), and the backbone's share of the
  learning rate (with stage 1).

Trial 0 is the shipped recipe, on the same folds and seed; the next trials are it with a speaker adversary,
with stochastic depth and with the residual probe (``starts``). The TPE sampler (seeded) runs a fixed budget
of trials. A median pruner stops a trial once its running mean after a fold is below the median of
earlier trials at that fold. Workers (``--workers``, one process and core each) share one Optuna
journal file, so a killed search resumes where it stopped.

Then, once, the test folds: ``--confirm N`` cross-validates the shipped recipe and the best trial (by the
objective) for N seeds each, clip protocol, paired over seeds x folds (what a changed default would be
claimed on). The search never sees these figures.

    python bench/search.py [--trials 21] [--workers 2] [--confirm 3] [--jobs 2] [--quick]

Writes bench/results/search[-quick].json and search[-quick].png; the journal lives in bench/runs/search*/.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapter import cross_validated  # noqa: E402
from common import RESULTS, RUNS, clip_runs, paired_runs, save  # noqa: E402
from probe_fusion import part  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
import torch  # noqa: E402
from optuna.storages import JournalStorage  # noqa: E402
from optuna.storages.journal import JournalFileBackend  # noqa: E402

from sera.config import CLEAN_CLIPS, RAW_FEATURES, SeraConfig  # noqa: E402
from sera.evaluate import fit_fold  # noqa: E402
from sera.normalise import normalise  # noqa: E402
from sera.pipeline import apply_quick, corpus_and_folds, features  # noqa: E402
from sera.train import stage1  # noqa: E402

SHARED: dict = {}  # what forked workers read: the features, folds and base config (not pickled)


def base_config(quick: bool) -> SeraConfig:
    cfg = SeraConfig.preset("reproduce").updated(CLEAN_CLIPS)  # stage 2 searched on the clips alone
    if quick:  # the harness on a few speakers and epochs
        cfg = apply_quick(cfg).updated({"train.pretrain_epochs": 1, "train.finetune_epochs": 2})
    return cfg


def suggest(trial: optuna.Trial) -> dict:
    """One trial's settings (``section.name`` -> value); the shipped recipe's when nothing is suggested."""
    s: dict = {"train.stage1": trial.suggest_categorical("train.stage1", [True, False])}
    if not s["train.stage1"]:  # stage 1's settings are free only when there is no stage 1 to keep as shipped
        s["model.width"] = trial.suggest_categorical("model.width", [96, 192])
        s["model.layers"] = trial.suggest_int("model.layers", 1, 3)
        s["train.lr"] = trial.suggest_float("train.lr", 1e-4, 2e-3, log=True)
        s["train.weight_decay"] = trial.suggest_float("train.weight_decay", 0.01, 0.3, log=True)
        s["model.dropout"] = trial.suggest_float("model.dropout", 0.0, 0.4)
    else:
        s["train.finetune_backbone_lr"] = trial.suggest_float("train.finetune_backbone_lr", 0.1, 1.0, log=True)
    s["train.finetune_mask_prob"] = trial.suggest_float("train.finetune_mask_prob", 0.0, 0.4)
    s["train.label_smoothing"] = trial.suggest_float("train.label_smoothing", 0.0, 0.2)
    s["train.mixup"] = trial.suggest_categorical("train.mixup", [0.0, 0.2, 0.4])
    s["train.finetune_ema"] = trial.suggest_categorical("train.finetune_ema", [0.0, 0.99, 0.995])
    s["model.drop_path"] = trial.suggest_categorical("model.drop_path", [0.0, 0.1, 0.2])
    s["train.speaker_adversary"] = trial.suggest_categorical("train.speaker_adversary", [0.0, 0.3, 1.0])
    s["model.residual_probe"] = trial.suggest_categorical("model.residual_probe", [False, True])
    return s


def shipped(base: SeraConfig) -> dict:
    """Trial 0: the recipe ``make reproduce`` ships, in the search's own names."""
    t = base.train
    return {"train.stage1": True, "train.finetune_backbone_lr": t.finetune_backbone_lr,
            "train.finetune_mask_prob": t.finetune_mask_prob, "train.label_smoothing": t.label_smoothing,
            "train.mixup": t.mixup, "train.finetune_ema": t.finetune_ema, "model.drop_path": base.model.drop_path,
            "train.speaker_adversary": t.speaker_adversary, "model.residual_probe": base.model.residual_probe}


def starts(base: SeraConfig) -> list[dict]:
    """The trials run first: the shipped recipe, then it with each setting the space gained later (a speaker
    adversary and stochastic depth on 2026-12-06, the residual probe on 2026-12-07), so that each is measured
    against trial 0 whatever TPE picks."""
    ship = shipped(base)
    return [ship, {**ship, "train.speaker_adversary": 1.0}, {**ship, "model.drop_path": 0.1},
            {**ship, "model.residual_probe": True}]


def adapter_folder(base: SeraConfig, fold: str, quick: bool) -> Path:
    """Where a fold's shipped stage 1 is kept: named by the config, so another recipe never reads it."""
    key = hashlib.sha256(json.dumps(base.to_dict(), sort_keys=True).encode()).hexdigest()[:10]
    return RUNS / f"search{'-quick' if quick else ''}" / f"stage1-{fold}-{key}"


def _stage1_worker(i: int) -> None:
    fs, normalised, folds, base, quick = (SHARED[k] for k in ("fs", "normalised", "folds", "base", "quick"))
    fold = folds[i]
    train_idx = [j for j, u in enumerate(fs.utts) if u.id not in fold.test_ids]
    stage1(normalised.subset(train_idx), base, False, adapter_folder(base, fold.name, quick))


def objective(trial: optuna.Trial) -> float:
    fs, normalised, folds, base, quick, C = (SHARED[k] for k in ("fs", "normalised", "folds", "base", "quick", "C"))
    settings = suggest(trial)
    cfg = base.updated(settings)
    heads, rows = [], []
    t0 = time.perf_counter()
    for k, fold in enumerate(folds):
        f = fit_fold(fs, fold, cfg, C, False, normalised=normalised,
                     stage1_saved=adapter_folder(base, fold.name, quick))
        best = max(f.history, key=lambda r: r.get("val_ua", 0.0))
        rows.append({"fold": fold.name, "val": f.val_fusion, "best_epoch": best["epoch"]})
        heads.append(f.val_fusion["0"])
        trial.set_user_attr("folds", rows)
        trial.report(float(np.mean(heads)), k)
        if trial.should_prune():
            trial.set_user_attr("minutes", (time.perf_counter() - t0) / 60)
            raise optuna.TrialPruned()
    trial.set_user_attr("minutes", (time.perf_counter() - t0) / 60)
    for w, name in (("0.5", "val_shipped"), ("1", "val_probe")):
        trial.set_user_attr(name, float(np.mean([r["val"][w] for r in rows])))
    return float(np.mean(heads))


def _worker(args: tuple[str, int, int]) -> None:
    path, trials, seed = args
    torch.set_num_threads(1)
    study = optuna.load_study(study_name="stage2", storage=storage(path),
                              sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=6),
                              pruner=optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=1))
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    if len(study.get_trials(deepcopy=False, states=states)) < trials:  # a resumed search may be done already
        study.optimize(objective, callbacks=[optuna.study.MaxTrialsCallback(trials, states=states)])


def storage(path: str) -> JournalStorage:
    return JournalStorage(JournalFileBackend(path))


def summary(study: optuna.Study, folds: list[str]) -> dict:
    rows = []
    for t in study.trials:
        if t.state not in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED):
            continue
        done = t.user_attrs.get("folds", [])
        rows.append({"number": t.number, "state": t.state.name.lower(), "params": t.params,
                     "val_head": t.value,  # a pruned trial's: its running mean when it was stopped
                     "val_shipped": t.user_attrs.get("val_shipped"),
                     "val_probe": t.user_attrs.get("val_probe"), "folds_run": len(done), "folds": done,
                     "minutes": t.user_attrs.get("minutes")})
    busy, end = 0.0, None  # minutes in which some trial ran: a resumed search's pause is left out
    for start, done in sorted((t.datetime_start, t.datetime_complete) for t in study.trials if t.datetime_complete):
        if end is None or done > end:
            busy += (done - max(start, end or start)).total_seconds() / 60
            end = done
    complete = [r for r in rows if r["state"] == "complete"]
    best = max(complete, key=lambda r: r["val_head"])
    best_shipped = max(complete, key=lambda r: r["val_shipped"])
    out = {"wall_minutes": busy, "trials": rows, "best_head": best, "best_shipped": best_shipped,
           "shipped_recipe": next(r for r in rows if r["number"] == 0), "folds": folds}
    if len(complete) >= 3:
        try:  # which settings moved the head's validation UA (fANOVA over the completed trials)
            out["importance"] = optuna.importance.get_param_importances(study)
        except (RuntimeError, ValueError) as e:
            out["importance"] = {"unavailable": str(e)}
    return out


def plot(result: dict, path: Path) -> None:
    rows = [r for r in result["trials"] if r["state"] == "complete"]
    fig, ax = plt.subplots(figsize=(7, 4))
    x = [r["number"] for r in rows]
    ax.scatter(x, [100 * r["val_head"] for r in rows], label="head alone (objective)", color="C0")
    ax.scatter(x, [100 * r["val_shipped"] for r in rows], label="head + probe (shipped mix)", color="C1", marker="s")
    probe = 100 * float(np.mean([r["val_probe"] for r in rows]))
    ax.axhline(probe, color="C2", ls="--", label=f"probe alone ({probe:.1f})")
    ship = result["shipped_recipe"]
    if ship["state"] == "complete":
        ax.axhline(100 * ship["val_head"], color="C0", ls=":", label="head alone, shipped recipe (trial 0)")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation UA (%)")
    ax.set_title("Stage 2 search on validation speakers (RAVDESS + EmoDB)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def confirm(best: dict, seeds: int, jobs: int, quick: bool) -> dict:
    """The shipped recipe and the best trial's settings on the test folds, ``seeds`` seeds each, paired."""
    shipped_settings = {**RAW_FEATURES, "model.probe_weight": 0.5}  # reproduce's until 2026-12-07
    arms = {"shipped recipe": {}, f"trial {best['number']}": best["params"]} if best["number"] else {"shipped recipe": {}}
    out: dict = {}
    for arm, params in arms.items():
        settings = {**shipped_settings, "train.jobs": jobs, **params}
        tag = "search-confirm-" + hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
        r = part(*cross_validated("ravdess+emodb", settings, seeds, quick, tag))
        runs = clip_runs(r)
        out[arm] = {"settings": params, "seeds": r["seeds"], "head_alone": r["test_fusion"]["clip"]["0"],
                    "shipped_mix": r["test_fusion"]["clip"]["0.5"], "probe_alone": r["test_fusion"]["clip"]["1"],
                    "runs": runs, "wall_minutes": r["wall_minutes"]}
        if arm != "shipped recipe":
            base = out["shipped recipe"]["runs"]
            out[arm]["gain"] = {"head_alone": paired_runs(base["0"], runs["0"]),
                                "shipped_mix": paired_runs(base["0.5"], runs["0.5"])}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=21, help="the fixed budget: trials that end (complete or pruned)")
    ap.add_argument("--workers", type=int, default=2, help="trials run at once, one process and core each")
    ap.add_argument("--seed", type=int, default=0, help="the TPE sampler's (each worker adds its index)")
    ap.add_argument("--confirm", type=int, default=3, help="seeds of the test-fold check afterwards (0: none)")
    ap.add_argument("--jobs", type=int, default=2, help="the test-fold check's folds trained at once (train.jobs)")
    ap.add_argument("--quick", action="store_true", help="a few speakers, 2 trials: the harness only")
    args = ap.parse_args()
    trials, workers = (2, 1) if args.quick else (args.trials, args.workers)
    seeds = min(args.confirm, 1) if args.quick else args.confirm
    base = base_config(args.quick)
    corpus, folds = corpus_and_folds(base)
    folds = folds[:1] if args.quick else folds  # one fold checks the harness
    fs = features(corpus, base, progress=not args.quick)[0]
    SHARED.update(fs=fs, normalised=normalise(fs, base.data.normalise), folds=folds, base=base, quick=args.quick,
                  C=len(corpus.labels))
    name = f"search{'-quick' if args.quick else ''}"
    journal = RUNS / name / "journal.log"
    journal.parent.mkdir(parents=True, exist_ok=True)
    if args.quick:  # the harness check starts afresh; the full search resumes
        journal.unlink(missing_ok=True)
    study = optuna.create_study(study_name="stage2", storage=storage(str(journal)), direction="maximize",
                                load_if_exists=True)
    ship = shipped(base)  # a setting a trial lacks (it ran before the setting existed) had the shipped value
    queued = [{**ship, **t.system_attrs.get("fixed_params", t.params)} for t in study.trials]
    for params in starts(base):  # a search resumed after the space grew runs the new starts first
        if params not in queued:
            study.enqueue_trial(params)
    fork = multiprocessing.get_context("fork")
    with fork.Pool(min(workers, len(folds)), initializer=torch.set_num_threads, initargs=(1,)) as pool:
        pool.map(_stage1_worker, range(len(folds)))  # the shipped stage 1 of every fold, once, before any trial
    procs = [fork.Process(target=_worker, args=((str(journal), trials, args.seed + w),)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    if any(p.exitcode for p in procs):
        raise SystemExit(f"a search worker failed (exit codes {[p.exitcode for p in procs]}); rerun to resume")
    study = optuna.load_study(study_name="stage2", storage=storage(str(journal)))
    result = {"corpus": base.data.corpus, "protocol": "validation speakers only (no test fold is read)",
              "objective": "head alone, mean validation UA over folds", "seed": base.seed, "budget": trials,
              "workers": workers, "optuna": optuna.__version__, **summary(study, [f.name for f in folds])}
    saved = RESULTS / f"{name}.json"
    before = json.loads(saved.read_text()) if saved.is_file() else {}
    if not seeds and "confirm" in before and before["best_head"]["params"] == result["best_head"]["params"]:
        result["confirm"] = before["confirm"]  # --confirm 0 keeps the test-fold check of the same best trial
    save(name, result)
    plot(result, RESULTS / f"{name}.png")
    if seeds:
        result["confirm"] = confirm(result["best_head"], seeds, args.jobs, args.quick)
        save(name, result)
    b, s = result["best_head"], result["shipped_recipe"]
    print(f"shipped recipe: head {100 * s['val_head']:.1f}, with probe {100 * (s['val_shipped'] or 0):.1f}; "
          f"best head (trial {b['number']}): {100 * b['val_head']:.1f}, with probe {100 * b['val_shipped']:.1f}, "
          f"probe alone {100 * b['val_probe']:.1f}; {b['params']}", flush=True)


if __name__ == "__main__":
    main()
