"""Speaker-independent cross-validation of the full method (and its ablations).

Scores come from ``sera.metrics`` (UA, WA, macro-F1). Each seed's score is the mean over
folds; results report mean and standard deviation over seeds, plus every fold and seed.

Every trained fold model is scored in both test protocols, because only the test features differ:
- **clip**: each test clip alone, as ``sera predict FILE`` and the demo see it: a speaker-normalised
  model standardises it with the reference statistics of the fold's *training* speakers, and no
  other test clip is used. This is what a user gets, so it leads.
- **speaker**: each test speaker standardised with the statistics of all their own clips (the usual
  speaker-normalised research protocol; users rarely have it). For a model trained without
  normalisation, or with each clip's own statistics ("utterance"), the two protocols coincide.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .calibrate import fit_temperature, temper
from .config import PROTOCOLS, SeraConfig
from .data import Corpus, Fold
from .errors import SeraError
from .io import atomic_write_text
from .features import FeatureSet
from .metrics import corpus_metrics, metrics, reliability, unweighted_accuracy
from .model import EmotionClassifier
from .inference import classify_clip, predict_proba
from .normalise import clip_stats, normalise, probe_view, reference_stats, speaker_stats
from .provenance import code_version
from .report import led
from .runstate import check_state
from .train import finetune, stage1, uses_stage1

def carve_validation(fs: FeatureSet, idx: list[int], share: float, seed: int) -> tuple[list[int], list[int]]:
    """Hold out a share of the training speakers (at least one) for early stopping."""
    speakers = sorted({fs.utts[i].speaker for i in idx})
    if len(speakers) < 2 or share <= 0:
        return idx, []
    n = max(1, round(share * len(speakers)))
    held = set(np.random.default_rng(seed).choice(speakers, n, replace=False).tolist())
    return [i for i in idx if fs.utts[i].speaker not in held], [i for i in idx if fs.utts[i].speaker in held]


@dataclass
class FoldResult:
    fold: str
    seed: int
    metrics: dict  # protocol ("clip", "speaker") -> metrics of the test fold
    best_epoch: int
    val_ua: float | None  # best validation UA (the early-stopping signal; what tuning may look at)
    stage1_seconds: float
    stage2_seconds: float
    stage1_epoch_seconds: float
    stage2_epoch_seconds: float
    code: dict | None = None  # provenance.code_version() of the code that ran this fold
    val_fusion: dict | None = None  # with a probe: validation UA at each probe weight (``fusion_curve``)
    test_fusion: dict | None = None  # with a probe: protocol -> test UA at each probe weight (0: the head alone)
    test_probabilities: dict | None = None  # protocol -> the test clips' (N, C) probabilities, in corpus order
    temperature: float = 1.0  # fitted on the validation speakers' probabilities (``calibration.temperature``)
    views: dict | None = None  # name -> clip-protocol metrics of the test clips as another view holds them (``views``)


def protocol_probabilities(model, raw: FeatureSet, train_idx: list[int], test_idx: list[int], mode: str,
                       protocol: str) -> torch.Tensor:
    """(N_test, C) class probabilities of ``raw``'s test clips (unnormalised features) in ``protocol``.

    clip: each clip alone through ``classify_clip``, standardised (``mode`` "speaker") with the
    reference statistics of the training speakers only. speaker: each test speaker standardised
    with all their own test clips, clips batched."""
    if protocol not in PROTOCOLS:
        raise SeraError(f"protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")
    test = raw.subset(test_idx)
    if protocol == "speaker":
        return predict_proba(model, normalise(test, mode))
    return each_alone(model, test.feats, raw.subset(train_idx), mode, test.speech)


def each_alone(model, feats: list[torch.Tensor], train: FeatureSet, mode: str,
               speech: list[torch.Tensor] | None = None) -> torch.Tensor:
    """(N, C) probabilities of clips (each (L, T, D), unnormalised) scored one at a time, as ``sera predict``
    scores a clip: a speaker-normalised model standardises each with the reference statistics of the
    ``train`` clips' speakers; ``speech``: each clip's speech frames."""
    reference = reference_stats(speaker_stats(train)) if mode == "speaker" else None
    speech = speech if speech is not None else [None] * len(feats)
    return torch.cat([classify_clip(model, f, clip_stats(mode, f, reference), s)[0].softmax(-1).float().cpu()
                      for f, s in zip(feats, speech)])


FUSION_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def part_probabilities(model, score: Callable[[], torch.Tensor]) -> dict[str, torch.Tensor]:
    """``score()``'s (N, C) probabilities from the SAP head alone and from the probe alone."""
    w = model.probe_weight
    try:
        out = {}
        for part, alone in (("head", 0.0), ("probe", 1.0)):
            model.probe_weight = alone
            out[part] = score()
        return out
    finally:
        model.probe_weight = w


def mix(parts: dict[str, torch.Tensor], w: float) -> torch.Tensor:
    """The fused model's probabilities from its parts' (``part_probabilities``), as its forward mixes them."""
    return (1 - w) * parts["head"] + w * parts["probe"]


def fusion_curve(parts: dict[str, torch.Tensor], y: np.ndarray, num_classes: int) -> dict[str, float]:
    """UA of the head's and the fitted probe's probabilities averaged at each weight of
    ``FUSION_WEIGHTS`` (0: the head alone, 1: the probe alone). On validation speakers it is what
    ``model.probe_weight`` is chosen by; on the test fold, the record of each part's share."""
    return {f"{w:g}": unweighted_accuracy(y, mix(parts, w).argmax(1).numpy(), num_classes) for w in FUSION_WEIGHTS}


def score_view(model, view: FeatureSet, raw: FeatureSet, train_idx: list[int], test_ids: frozenset[str], mode: str,
               num_classes: int, temperature: float = 1.0) -> dict:
    """Clip-protocol metrics of the fold's test clips as ``view`` holds them (the same clips, by utterance id,
    recorded otherwise: through a laptop's microphone, a telephone line), each scored alone as ``sera predict``
    scores it; a speaker-normalised model standardises them with the training speakers' reference statistics."""
    idx = [i for i, u in enumerate(view.utts) if u.id in test_ids]
    probs = each_alone(model, [view.feats[i] for i in idx], raw.subset(train_idx), mode)
    y = view.labels[idx].numpy()
    out = {k: v for k, v in metrics(y, probs.argmax(1).numpy(), num_classes).items() if k != "confusion"}
    return {**out, "clips": len(idx), "ece_calibrated": reliability(y, temper(probs.numpy(), temperature))["ece"]}


@dataclass
class Fitted:
    """A fold's model after stage 1 and stage 2 on its training speakers, as ``fit_fold`` leaves it."""

    model: EmotionClassifier  # early-stopped on the validation speakers
    history: list[dict]  # stage 2's epochs
    train_idx: list[int]  # every training clip of the fold (fitting and validation speakers)
    val_idx: list[int]  # the validation speakers' clips (carved from the training speakers)
    labelled: Callable[[list[int]], FeatureSet]  # training clips (normalised) with their augmented copies
    val_probs: torch.Tensor | None  # (V, C) the validation clips' probabilities, probe mixed in as configured
    val_fusion: dict | None  # with a probe: validation UA at each probe weight
    stage1_seconds: float
    stage2_seconds: float


def fit_fold(fs: FeatureSet, fold: Fold, cfg: SeraConfig, num_classes: int, progress: bool = True,
             unlabelled: FeatureSet | None = None, state: Path | None = None,
             normalised: FeatureSet | None = None, copies: FeatureSet | None = None,
             stage1_saved: Path | None = None) -> Fitted:
    """Stage 1 and stage 2 on the fold's training speakers, judged on validation speakers carved from them.
    The test fold's clips are never read (their augmented copies stay out of stage 1 too): model selection
    (``bench/search.py``) stops here, ``run_fold`` goes on to the test fold. ``stage1_saved``: where stage 1's
    result is kept and reused (default: under ``state``)."""
    normalised = normalised if normalised is not None else normalise(fs, cfg.data.normalise)
    test_ids = fold.test_ids
    train_idx = [i for i, u in enumerate(fs.utts) if u.id not in test_ids]
    if unlabelled is not None:  # augmented copies keep their clip's id: the test clips' copies stay out
        unlabelled = unlabelled.subset([i for i, u in enumerate(unlabelled.utts) if u.id not in test_ids])
    L, _, D = fs.feats[0].shape
    init = attrs = None
    t0 = time.perf_counter()
    if uses_stage1(cfg):
        saved = stage1_saved or (state / "adapter" if state else None)
        init, attrs = stage1(normalised.subset(train_idx), cfg, progress, saved, unlabelled)
    t1 = time.perf_counter()
    fit_idx, val_idx = carve_validation(fs, train_idx, cfg.train.val_speakers, cfg.seed)

    def labelled(idx: list[int]) -> FeatureSet:  # training clips, with their augmented copies (``copies``) if any
        clips = normalised.subset(idx)
        if copies is None:
            return clips
        ids = {fs.utts[i].id for i in idx}
        return clips + copies.subset([i for i, u in enumerate(copies.utts) if u.id in ids])

    fit = labelled(fit_idx)
    model, history = finetune(fit, normalised.subset(val_idx) if val_idx else None, cfg, L, D,
                              num_classes, init=init, attrs=attrs, progress=progress,
                              resume=state / "stage2-progress.pt" if state else None)
    val_fusion = val_probs = None
    if val_idx:
        val = normalised.subset(val_idx)
        if model.probe is not None:  # fitted beside the head on the fitting speakers, scored on the validation
            #                          speakers, then refitted on every training speaker for the test fold (run_fold)
            model.probe.fit(probe_view(fit, cfg.model.probe_view).feats, fit.labels.numpy(), cfg.seed)
            val_parts = part_probabilities(model, lambda: predict_proba(model, val))
            val_fusion = fusion_curve(val_parts, val.labels.numpy(), num_classes)
            val_probs = mix(val_parts, model.probe_weight)
        else:
            val_probs = predict_proba(model, val)
    return Fitted(model, history, train_idx, val_idx, labelled, val_probs, val_fusion, t1 - t0,
                  time.perf_counter() - t1)


def run_fold(fs: FeatureSet, fold: Fold, cfg: SeraConfig, num_classes: int, progress: bool = True,
             unlabelled: FeatureSet | None = None, state: Path | None = None,
             normalised: FeatureSet | None = None, views: dict[str, FeatureSet] | None = None,
             copies: FeatureSet | None = None) -> FoldResult:
    """``fit_fold`` (stage 1 on the training folds' audio plus ``unlabelled`` audio, stage 2), then the test
    fold once, scored in both protocols. ``fs`` holds the unnormalised features; ``normalised`` the same
    standardised per speaker (``data.normalise``), made once for all folds by the caller (per-speaker
    statistics do not depend on the fold). With ``state``, stage 1's result is kept there and reused by a
    rerun, and a stage killed part-way goes on from its last finished epoch. ``copies`` and ``views``: see
    ``cross_validate``."""
    normalised = normalised if normalised is not None else normalise(fs, cfg.data.normalise)
    f = fit_fold(fs, fold, cfg, num_classes, progress, unlabelled, state, normalised, copies)
    model, history, train_idx, val_idx, val_probs = f.model, f.history, f.train_idx, f.val_idx, f.val_probs
    test_ids = fold.test_ids
    test_idx = [i for i, u in enumerate(fs.utts) if u.id in test_ids]
    test_fusion = None
    t1 = time.perf_counter()
    train = f.labelled(train_idx) if model.probe is not None or model.prior is not None else None
    if model.probe is not None:
        model.probe.fit(probe_view(train, cfg.model.probe_view).feats, train.labels.numpy(), cfg.seed)
    if model.prior is not None:  # the probe the head corrects, refitted on every training speaker as the other is
        model.prior.fit_prior(train.feats, train.labels.numpy(), train.speakers, cfg.seed)
    temperature = 1.0  # the validation speakers' probabilities, as the model gives them, tell how far to trust them
    if cfg.calibration.temperature and val_probs is not None:
        temperature = fit_temperature(val_probs.numpy(), fs.labels[val_idx].numpy())
    t2 = time.perf_counter()
    y = fs.labels[test_idx].numpy()
    sources = np.array([fs.utts[i].corpus for i in test_idx])
    several = len({u.corpus for u in fs.utts}) > 1  # trained on several corpora (or tested across them)
    scores, test_probabilities = {}, {}
    for p in PROTOCOLS:
        def score(p: str = p) -> torch.Tensor:
            return protocol_probabilities(model, fs, train_idx, test_idx, cfg.data.normalise, p)

        if model.probe is None:
            probs = score()
        else:  # each part scored once; every weight, the configured one too, is their mix
            parts = part_probabilities(model, score)
            probs = mix(parts, model.probe_weight)
            test_fusion = {**(test_fusion or {}), p: fusion_curve(parts, y, num_classes)}
        test_probabilities[p] = np.round(probs.numpy(), 6).tolist()  # what a seed ensemble averages
        pred = probs.argmax(1).numpy()
        scores[p] = metrics(y, pred, num_classes)
        scores[p]["ece"] = reliability(y, probs.numpy())["ece"]
        scores[p]["ece_calibrated"] = reliability(y, temper(probs.numpy(), temperature))["ece"]
        if several:
            scores[p]["corpora"] = corpus_metrics(y, pred, num_classes, sources)
    view_scores = {name: score_view(model, view, fs, train_idx, test_ids, cfg.data.normalise, num_classes, temperature)
                   for name, view in (views or {}).items()}
    best = max(history, key=lambda r: r.get("val_ua", 0.0)) if val_idx else {"epoch": len(history)}
    stage2 = f.stage2_seconds + t2 - t1  # with the probe's refit and the temperature
    return FoldResult(
        fold.name, cfg.seed, scores, best["epoch"], best.get("val_ua"),
        f.stage1_seconds, stage2,
        f.stage1_seconds / max(1, cfg.train.pretrain_epochs) if uses_stage1(cfg) else 0.0,
        stage2 / max(1, len(history)), code_version(), f.val_fusion, test_fusion, test_probabilities, temperature,
        view_scores or None,
    )


def seed_ensemble(runs: list[FoldResult], fs: FeatureSet, folds: list[Fold], protocol: str,
                  num_classes: int) -> dict | None:
    """What the seeds' models would score as one ensemble: per fold, the UA of their test probabilities
    averaged, and its gain over their mean UA. None with one seed, or with runs kept from a sera that
    did not save probabilities."""
    seeds = {r.seed for r in runs}
    if len(seeds) < 2 or any(r.test_probabilities is None for r in runs):
        return None
    per_fold = []
    for fold in folds:
        mine = [r for r in runs if r.fold == fold.name]
        y = fs.labels[[i for i, u in enumerate(fs.utts) if u.id in fold.test_ids]].numpy()
        probs = np.mean([r.test_probabilities[protocol] for r in mine], axis=0)  # (N, C)
        ua = unweighted_accuracy(y, probs.argmax(1), num_classes)
        per_fold.append({"fold": fold.name, "ua": ua, "gain": ua - float(np.mean([r.metrics[protocol]["ua"] for r in mine]))})
    gains = [f["gain"] for f in per_fold]
    return {"seeds": len(seeds), "ua": float(np.mean([f["ua"] for f in per_fold])), "mean_gain": float(np.mean(gains)),
            "folds_gained": sum(g > 0 for g in gains), "per_fold": per_fold}


def _peak_rss_mb() -> float | None:
    """This process's peak resident memory so far (what training on a corpus needs), None on Windows."""
    try:
        import resource
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _mean_std(values: list[float]) -> dict:
    return {"mean": float(np.mean(values)), "std": float(np.std(values))}


def cross_validate(fs: FeatureSet, corpus: Corpus, folds: list[Fold], cfg: SeraConfig, progress: bool = True,
                   unlabelled: FeatureSet | None = None, state: Path | None = None, report: bool | None = None,
                   normalised: FeatureSet | None = None, views: dict[str, FeatureSet] | None = None,
                   copies: FeatureSet | None = None) -> dict:
    """Every fold for ``cfg.train.seeds`` seeds; returns the results dictionary written to results.json.

    ``fs`` holds unnormalised features (``pipeline.features``): training standardises them as
    ``data.normalise`` says, and each test clip is scored in both protocols.

    With a ``state`` folder each finished fold (and each stage 1) is kept, so a rerun after an
    interruption picks up where it stopped and ends with the same results. ``report`` prints a
    line per fold (default: with ``progress``, which also shows progress bars). ``normalised``: ``fs``
    as ``normalise(fs, data.normalise)`` gives it, when the caller has it already (``sera train``
    trains its final model on it too). ``views``: the test clips as other recordings hold them (raw features
    keyed by the same utterance ids, e.g. ``pipeline.features(corpus, cfg, augment=laptop)``), each fold's model
    scoring them too in the clip protocol: ``results["views"]``. ``copies``: labelled augmented copies
    (``pipeline.labelled_copies``); each fold's stage 2 and probe learn from its training clips' copies too.
    """
    report = progress if report is None else report
    if fs.normalised != "none":
        raise SeraError("cross_validate takes features as the cache holds them (pipeline.features), not normalised: "
                        "it standardises the training folds itself and scores each test clip as it arrives")
    C = len(corpus.labels)
    if state is not None:
        check_state(state, cfg)
    lead = cfg.data.protocol
    if normalised is None:  # once: a speaker's statistics do not depend on the fold
        normalised = normalise(fs, cfg.data.normalise)
    jobs: list[tuple[SeraConfig, Fold, Path | None]] = []  # (config with the run's seed, fold, its state folder)
    for s in range(cfg.train.seeds):
        seeded = copy.deepcopy(cfg)
        seeded.seed = cfg.seed + s
        jobs += [(seeded, fold, state / f"seed{seeded.seed}-{fold.name}" if state is not None else None) for fold in folds]
    done: dict[int, FoldResult] = {}
    for i, (seeded, fold, where) in enumerate(jobs):
        if where is not None and (where / "result.json").is_file():
            done[i] = FoldResult(**json.loads((where / "result.json").read_text()))
            if set(done[i].metrics) != set(PROTOCOLS):
                raise SeraError(f"{where}: a result of an older sera (one protocol); use another --out, or --fresh")
    todo = [i for i in range(len(jobs)) if i not in done]
    for i in range(len(jobs)):
        if i in done and report:
            print(f"seed {jobs[i][0].seed}, fold {jobs[i][1].name}: done before (resumed)", flush=True)
    for i, r in _run_folds(jobs, todo, cfg.train.jobs, fs, C, progress, report, unlabelled, normalised, views,
                           copies):
        if jobs[i][2] is not None:
            atomic_write_text(jobs[i][2] / "result.json", json.dumps(r.__dict__))
        done[i] = r
        if report:
            print(f"  seed {r.seed}, fold {r.fold}: " + "; ".join(
                f"{p} protocol UA {m['ua']:.3f} WA {m['wa']:.3f} F1 {m['f1']:.3f}"
                for p, m in led(r.metrics, lead)) + f"  (best epoch {r.best_epoch})", flush=True)
    runs = [done[i] for i in range(len(jobs))]
    protocols = {p: _summary(runs, folds, p) for p in PROTOCOLS}
    for p in PROTOCOLS:
        if (ensemble := seed_ensemble(runs, fs, folds, p, C)) is not None:
            protocols[p]["seed_ensemble"] = ensemble
    return {
        "corpus": corpus.name,
        "labels": corpus.labels,
        "utterances": len(fs),
        "speaker_independent": all(f.speaker_independent for f in folds),
        "protocol": lead,  # the protocol of the headline figures below (ua ... confusion)
        **protocols[lead],
        "protocols": protocols,
        "runs": [{k: v for k, v in r.__dict__.items() if k != "test_probabilities"} for r in runs],
        "best_epochs": [r.best_epoch for r in runs],
        "val_ua": float(np.mean(vals)) if (vals := [r.val_ua for r in runs if r.val_ua is not None]) else None,
        "temperature": float(np.median([r.temperature for r in runs])),  # what the final checkpoint applies
        **_probe_summary(runs),
        **_views_summary(runs),
        "timing": {
            "stage1_seconds_per_epoch": float(np.mean([r.stage1_epoch_seconds for r in runs])),
            "stage2_seconds_per_epoch": float(np.mean([r.stage2_epoch_seconds for r in runs])),
            "total_seconds": float(sum(r.stage1_seconds + r.stage2_seconds for r in runs)),
            "peak_rss_mb": _peak_rss_mb(),
        },
        "skipped": fs.skipped,
        "code": [json.loads(c) for c in sorted({json.dumps(r.code, sort_keys=True) for r in runs if r.code})],  # all that ran
        "config": cfg.to_dict(),
    }


_SHARED: dict = {}  # what forked fold workers read instead of receiving it pickled (the features are large)


def _run_folds(jobs: list, todo: list[int], workers: int, fs: FeatureSet, C: int, progress: bool, report: bool,
               unlabelled: FeatureSet | None, normalised: FeatureSet, views: dict[str, FeatureSet] | None = None,
               copies: FeatureSet | None = None):
    """Yield ``(job index, FoldResult)`` for the ``todo`` jobs: one after another, or ``workers``
    (``train.jobs``) at a time in forked processes sharing the features (CPU only), each with its share
    of the cores. A fold's result depends only on its seed and fold, so both ways give the same runs."""
    workers = min(workers, len(todo))
    if workers > 1 and (torch.cuda.is_available() or torch.distributed.is_initialized()):
        print("train.jobs: folds run one at a time on a GPU or under torchrun", flush=True)
        workers = 1
    if workers <= 1:
        for i in todo:
            seeded, fold, where = jobs[i]
            if report:
                print(f"seed {seeded.seed}, fold {fold.name}", flush=True)
            yield i, run_fold(fs, fold, seeded, C, progress, unlabelled, where, normalised, views, copies)
        return
    import multiprocessing

    if report:
        print(f"{len(todo)} folds, {workers} at a time (train.jobs), each on {_threads(workers)} thread(s)", flush=True)
    _SHARED.update(jobs=jobs, fs=fs, C=C, unlabelled=unlabelled, normalised=normalised, views=views, copies=copies)
    # Largest training set first, so that the last fold to end is a short one (make reproduce's EmoDB-only
    # fold trains on the most clips: started last it ran alone while the other core idled)
    todo = sorted(todo, key=lambda i: len(jobs[i][1].test_ids))
    try:
        with multiprocessing.get_context("fork").Pool(workers, initializer=_fold_worker_init, initargs=(workers,)) as pool:
            yield from pool.imap_unordered(_fold_worker, todo)
    finally:
        _SHARED.clear()


def _threads(workers: int) -> int:
    return max(1, torch.get_num_threads() // workers)


def _fold_worker_init(workers: int) -> None:
    torch.set_num_threads(_threads(workers))


def _fold_worker(i: int) -> tuple[int, FoldResult]:
    seeded, fold, where = _SHARED["jobs"][i]
    return i, run_fold(_SHARED["fs"], fold, seeded, _SHARED["C"], False, _SHARED["unlabelled"], where,
                       _SHARED["normalised"], _SHARED["views"], _SHARED["copies"])


def _probe_summary(runs: list[FoldResult]) -> dict:
    """With a probe: the mean validation UA at each probe weight, and the test UA at each (mean ± std
    over seeds of the fold means, as the headline figures) per protocol."""
    out: dict = {}
    if curves := [r.val_fusion for r in runs if r.val_fusion]:
        out["val_fusion"] = {w: float(np.mean([c[w] for c in curves])) for w in curves[0]}
    if runs and all(r.test_fusion for r in runs):
        seeds = sorted({r.seed for r in runs})
        out["test_fusion"] = {
            p: {w: _mean_std([float(np.mean([r.test_fusion[p][w] for r in runs if r.seed == s])) for s in seeds])
                for w in curve} for p, curve in runs[0].test_fusion.items()}
    return out


def _views_summary(runs: list[FoldResult]) -> dict:
    """Each view's UA / WA / F1 (mean ± std over seeds of the fold means, as the headline) and its change
    from the clean clips in the clip protocol, paired by seed and fold."""
    names = sorted({n for r in runs for n in (r.views or {})})
    if not names or not all(r.views for r in runs):
        return {}
    seeds = sorted({r.seed for r in runs})
    out = {}
    for name in names:
        out[name] = {k: _mean_std([float(np.mean([r.views[name][k] for r in runs if r.seed == s])) for s in seeds])
                     for k in ("ua", "wa", "f1", "ece_calibrated")}
        gains = [r.views[name]["ua"] - r.metrics["clip"]["ua"] for r in runs]
        out[name]["vs_clean_ua"] = {"mean": float(np.mean(gains)), "worse": sum(g < 0 for g in gains), "pairs": len(gains)}
    return {"views": out}


def _summary(runs: list[FoldResult], folds: list[Fold], protocol: str) -> dict:
    per_seed = []
    for s in sorted({r.seed for r in runs}):
        mine = [r.metrics[protocol] for r in runs if r.seed == s]
        per_seed.append({"seed": s, **{k: float(np.mean([m[k] for m in mine])) for k in ("ua", "wa", "f1")}})
    per_fold = []
    for fold in folds:
        mine = [r.metrics[protocol] for r in runs if r.fold == fold.name]
        per_fold.append({"fold": fold.name, "test_utterances": len(fold.test_ids),
                         **{k: _mean_std([m[k] for m in mine]) for k in ("ua", "wa", "f1")}})
    by_corpus = {}  # each corpus of a multi-corpus run: seed figure = mean over the folds testing it
    for c in sorted({c for r in runs for c in r.metrics[protocol].get("corpora", {})}):
        seeds = [[r.metrics[protocol]["corpora"][c] for r in runs if r.seed == s and c in r.metrics[protocol].get("corpora", {})]
                 for s in sorted({r.seed for r in runs})]
        by_corpus[c] = {k: _mean_std([float(np.mean([m[k] for m in mine])) for mine in seeds if mine])
                        for k in ("ua", "wa", "f1")}
    calibration = {k: _mean_std([r.metrics[protocol][k] for r in runs]) for k in ("ece", "ece_calibrated")
                   if all(k in r.metrics[protocol] for r in runs)}  # over seeds x folds (runs of an older sera lack it)
    return {
        **{k: _mean_std([p[k] for p in per_seed]) for k in ("ua", "wa", "f1")},
        **calibration,
        "per_seed": per_seed,
        "per_fold": per_fold,
        "confusion": np.sum([r.metrics[protocol]["confusion"] for r in runs], axis=0).tolist(),
        **({"by_corpus": by_corpus} if len(by_corpus) > 1 else {}),
    }
