"""The recipes: what ``sera train`` / ``evaluate`` / ``pretrain`` / ``finetune``, ``make reproduce``,
notebook 06 and the bench run, each a function of one ``SeraConfig`` and an output folder.

The CLI only turns flags into a config and calls these, so a notebook that calls
``recipe.train(SeraConfig.preset("reproduce"), "runs/ravdess+emodb")`` gets what ``make reproduce``
gets. The steps they share (features, folds, the final model) are in ``sera.pipeline``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .config import SeraConfig, name_list
from .data import Corpus, Fold, parts_of
from .domain import DomainCheck
from .errors import SeraError
from .features import FeatureSet
from .io import atomic_write_text
from .normalise import normalise


@dataclass
class Prepared:
    """What every recipe starts from: the corpus, its folds and its features (as the cache holds them)."""

    corpus: Corpus
    folds: list[Fold]
    fs: FeatureSet
    key: str  # the encoder's identity, recorded in checkpoints


def prepare(cfg: SeraConfig, progress: bool = True) -> Prepared:
    """The corpus and folds of ``cfg`` (or the cross-corpus fold with ``data.test_corpus``) and their
    features, extracted first where the cache lacks them."""
    from .pipeline import corpus_and_folds, cross_corpus, features

    if cfg.data.test_corpus:
        corpus, folds, fs = cross_corpus(cfg, progress)
        print(f"{corpus.summary()}\ntested on all of {cfg.data.test_corpus}: {len(next(iter(folds)).test_ids)} "
              f"utterances of the {len(corpus.labels)} emotions both have ({', '.join(corpus.labels)})", flush=True)
        return Prepared(corpus, folds, fs, fs.key)
    corpus, folds = corpus_and_folds(cfg)
    print(corpus.summary(), flush=True)
    fs, key = features(corpus, cfg, progress)
    return Prepared(corpus, folds, fs, key)


def domain_check(fs: FeatureSet, cfg: SeraConfig) -> DomainCheck:
    """The training clips' domain check (``fs`` as the cache holds them, as a user's clip arrives), for the
    checkpoint: speakers are told apart by corpus too, so that two corpora's "03" stay two voices."""
    return DomainCheck.fit(fs.feats, fs.speakers, cfg.calibration.domain_quantile)


def _one_corpus(cfg: SeraConfig, what: str) -> None:
    if cfg.data.test_corpus:
        raise SeraError(f"--test-corpus: {what} would train on the test corpus too; cross-corpus runs are "
                        "sera evaluate (or train) --test-corpus")


def train(cfg: SeraConfig, out: str | Path, final: bool = True, progress: bool = True) -> dict:
    """Cross-validation over the corpus's folds (``OUT/results.md``, ``results.json``), then, with ``final``,
    a checkpoint trained on every speaker (``OUT/checkpoint``, with a model card). Returns the results.

    Finished folds and stage 1 results are kept in ``OUT/state``, so a rerun after an interruption
    resumes where it stopped."""
    from .checkpoint import save_checkpoint
    from .evaluate import cross_validate
    from .report import write_results
    from .runstate import FINISHED, check_state, forget_finished
    from .hub import model_card
    from .pipeline import final_epochs, final_stage1_beside, labelled_copies, train_final, unlabelled_features

    if cfg.data.normalise == "utterance" and cfg.model.probe_weight > 0:
        raise SeraError("model.probe_weight: the probe reads each layer's time mean, which data.normalise=utterance "
                        "sets to zero in every clip; train it with --probe 0")
    if cfg.train.stats_dropout > 0 and cfg.data.normalise != "speaker":
        raise SeraError("train.stats_dropout redraws speaker statistics: set data.normalise=speaker")
    if cfg.model.probe_view == "reference" and (cfg.data.normalise != "speaker" or cfg.model.probe_weight == 0):
        raise SeraError("model.probe_view=reference fits the probe on speaker-normalised clips restandardised with the "
                        "reference: set data.normalise=speaker and a model.probe_weight above 0")
    out = Path(out)
    p = prepare(cfg, progress)
    corpus, fs = p.corpus, p.fs
    if forget_finished(out / "state", cfg):
        print(f"{out}: its finished run was made by other code or settings; starting over", flush=True)
    unlabelled = unlabelled_features(cfg, progress, corpus)
    copies = labelled_copies(cfg, corpus, progress)
    transfer = bool(cfg.data.test_corpus)
    check_state(out / "state", cfg)  # before anything writes there (cross_validate checks again)
    normalised = normalise(fs, cfg.data.normalise)  # what training reads: the folds' and the final model's
    beside = final_stage1_beside(normalised, cfg, unlabelled, out / "state") if final and not transfer else None
    try:
        results = cross_validate(fs, corpus, p.folds, cfg, progress, unlabelled, out / "state", report=True,
                                 normalised=normalised, copies=copies)
    finally:  # never waited on at its low priority: what it has not done, train_final (or a rerun) does at full
        if beside is not None:  # speed, going on from its last finished epoch (saved at each epoch's end)
            beside.terminate()
            beside.join()
    where = f"{corpus.name} -> {cfg.data.test_corpus}" if transfer else corpus.name
    write_results(results, out, f"sera on {where}" + (" (quick)" if cfg.train.quick else ""))
    print((out / "results.md").read_text())
    if final and transfer:
        print(f"no final checkpoint: --test-corpus measures a transfer; train on {corpus.name} alone for a checkpoint")
    elif final:
        epochs = final_epochs(results["best_epochs"])
        print(f"final model on all {len(corpus.speakers)} speakers, stage 2 for {epochs} epochs", flush=True)
        model, attrs = train_final(normalised, cfg, len(corpus.labels), epochs, progress, unlabelled, out / "state",
                                   copies=copies)
        L, _, D = fs.feats[0].shape
        cv = {k: {m: v[m] for m in ("ua", "wa", "f1", "by_corpus") if m in v} for k, v in results["protocols"].items()}
        save_checkpoint(out / "checkpoint", model, cfg, corpus.labels, p.key, L, D,
                        {"trained_on": corpus.name, "corpora": parts_of(corpus), "cv_ua": results["ua"],
                         "cv_protocol": results["protocol"], "cv": cv, "stage2_epochs": epochs,
                         "temperature": results["temperature"]},
                        normalised.reference, attrs, domain_check(fs, cfg))
        atomic_write_text(out / "checkpoint" / "README.md", model_card(out / "checkpoint"))  # ready for `sera push`
        print(f"checkpoint: {out / 'checkpoint'}")
    atomic_write_text(out / "state" / FINISHED, "")
    return results


def reproduce(out: str | Path = "runs/ravdess+emodb", jobs: int = 1, quick: bool = False,
              progress: bool = True) -> dict:
    """``make reproduce``: the ``reproduce`` preset (what sera ships) trained and cross-validated into ``out``."""
    from .pipeline import apply_quick

    cfg = SeraConfig.preset("reproduce").updated({"train.jobs": jobs})
    return train(apply_quick(cfg) if quick else cfg, out, progress=progress)


def pretrain(cfg: SeraConfig, out: str | Path, progress: bool = True) -> Path:
    """Stage 1 alone on the corpus's audio (no labels used), saved as ``OUT/adapter``."""
    from .checkpoint import save_adapter
    from .pipeline import pretrain_corpora, unlabelled_features
    from .train import pretrain as stage1_alone

    _one_corpus(cfg, "sera pretrain")
    out = Path(out)
    p = prepare(cfg, progress)
    fs = normalise(p.fs, cfg.data.normalise)
    unlabelled = unlabelled_features(cfg, progress, p.corpus)
    pool = fs + unlabelled if unlabelled is not None else fs
    L, _, D = pool.feats[0].shape
    model, attrs, history = stage1_alone(pool, cfg, L, D, progress=progress)
    save_adapter(out / "adapter", model, attrs, cfg, p.key, L, D,
                 {"pretrained_on": [p.corpus.name, *pretrain_corpora(cfg), *name_list(cfg.train.pretrain_audio)]})
    atomic_write_text(out / "pretrain_history.json", json.dumps(history, indent=2))
    last = history[-1] if history else {}
    print("stage 1: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in last.items()))
    print(f"adapter: {out / 'adapter'} (fine-tune it with: sera finetune --adapter {out / 'adapter'} ...)")
    return out / "adapter"


def finetune(cfg: SeraConfig, out: str | Path, adapter: str | Path | None = None, progress: bool = True) -> Path:
    """Stage 2 alone: one model on the corpus (from ``adapter``, a ``pretrain`` result, or fresh),
    early-stopped on held-out speakers, saved as ``OUT/checkpoint``. The adapter fixes the model's
    shape, the encoder layers and the normalisation it was trained on; ``cfg``'s are replaced."""
    from .checkpoint import load_adapter, model_config, read_checkpoint_config, save_checkpoint
    from .calibrate import fit_temperature
    from .evaluate import carve_validation
    from .inference import predict_proba
    from .train import final_attributes, finetune as stage2

    _one_corpus(cfg, "sera finetune")
    out = Path(out)
    init = attrs = None
    if adapter:  # read before the features: they depend on it
        meta = read_checkpoint_config(adapter)
        cfg = cfg.updated({"encoder.layers": meta["encoder"].get("layers", ""),
                           "data.normalise": meta.get("normalise", "none")})
        cfg.model = model_config(Path(adapter), meta)
    p = prepare(cfg, progress)
    fs = normalise(p.fs, cfg.data.normalise)
    if adapter:
        init, attrs, _ = load_adapter(adapter, p.key)
    fit, val = carve_validation(fs, list(range(len(fs))), cfg.train.val_speakers, cfg.seed)
    L, _, D = fs.feats[0].shape
    model, history = stage2(fs.subset(fit), fs.subset(val) if val else None, cfg, L, D, len(p.corpus.labels),
                            init=init, attrs=attrs, progress=progress)
    best = max(history, key=lambda r: r.get("val_ua", 0.0))
    temperature = 1.0
    if val and cfg.calibration.temperature:
        temperature = fit_temperature(predict_proba(model, fs.subset(val)).numpy(), fs.labels[val].numpy())
    save_checkpoint(out / "checkpoint", model, cfg, p.corpus.labels, p.key, L, D,
                    {"trained_on": p.corpus.name, "adapter": str(adapter) if adapter else None,
                     "val_ua": best.get("val_ua"), "temperature": temperature}, fs.reference,
                    final_attributes(model, fs, cfg, attrs), domain_check(p.fs, cfg))
    atomic_write_text(out / "finetune_history.json", json.dumps(history, indent=2))
    if "val_ua" in best:
        print(f"best validation UA {best['val_ua']:.3f} at epoch {best['epoch']} "
              f"({len({fs.utts[i].speaker for i in val})} held-out speakers)")
    print(f"checkpoint: {out / 'checkpoint'}")
    return out / "checkpoint"
