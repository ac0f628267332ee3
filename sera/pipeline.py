"""The recipe steps that the CLI, the notebooks and the app share: features in, models out."""

from __future__ import annotations

import copy
import multiprocessing
import os
import statistics
from collections.abc import Callable
from pathlib import Path

import torch

from .augment import Augmentation, parse_copies
from .cache import FeatureCache, extract
from .config import SeraConfig, name_list
from .data import Corpus, Fold, load_corpus, make_folds, read_unlabelled, shared_labels
from .data.corpora import CORPUS_JOIN
from .encoders import Encoder, encoder_identity
from .errors import CacheError, SeraError
from .normalise import normalise, probe_view
from .features import FeatureSet, load_feature_set, speech_masks
from .train import final_attributes, finetune, stage1, uses_stage1

QUICK_SPEAKERS = 8  # --quick: the first speakers of the corpus, in sorted order
QUICK_FOLDS = 2  # --quick: only the first folds


def apply_quick(cfg: SeraConfig) -> SeraConfig:
    """A copy of ``cfg`` that runs in about a minute: one seed, few epochs."""
    cfg = copy.deepcopy(cfg)
    cfg.train.quick = True
    cfg.train.seeds = 1
    cfg.train.pretrain_epochs = min(cfg.train.pretrain_epochs, 3)
    cfg.train.finetune_epochs = min(cfg.train.finetune_epochs, 10)
    cfg.train.patience = max(cfg.train.patience, 6)  # validation on one or two speakers is noisy: quick runs stop
    #                                                   as before the default fell to 3 (CI's quick level rests on them)
    cfg.train.refresh_every = min(cfg.train.refresh_every, 10)
    return cfg


def _first_speakers(corpus: Corpus, n: int) -> Corpus:
    """The first ``n`` speakers of each corpus a (combined) corpus is made of."""
    speakers: dict[str, set[str]] = {}
    for u in corpus.utterances:
        speakers.setdefault(u.corpus, set()).add(u.speaker)
    keep = {s for mine in speakers.values() for s in sorted(mine)[:n]}
    return corpus.subset(u for u in corpus.utterances if u.speaker in keep)


def corpus_and_folds(cfg: SeraConfig) -> tuple[Corpus, list[Fold]]:
    corpus = load_corpus(cfg.data)
    if cfg.train.quick:
        corpus = _first_speakers(corpus, QUICK_SPEAKERS)
        return corpus, make_folds(corpus, cfg.data, cfg.seed)[:QUICK_FOLDS]
    return corpus, make_folds(corpus, cfg.data, cfg.seed)


def cross_corpus(cfg: SeraConfig, progress: bool = True) -> tuple[Corpus, list[Fold], FeatureSet]:
    """Train on ``data.corpus``, test on all of ``data.test_corpus``, over the emotions both have
    (unified names, ``data.classes`` narrowing the training corpus's first): one fold whose test
    part is the other corpus. Returns the training corpus, that fold and both corpora's features."""
    source, target = load_corpus(cfg.data), load_corpus(cfg.data, corpus=cfg.data.test_corpus, classes="")
    if cfg.train.quick:
        source, target = (_first_speakers(c, QUICK_SPEAKERS) for c in (source, target))
    source, target = shared_labels(source, target)
    clash = {u.id for u in source.utterances} & {u.id for u in target.utterances}
    if clash:
        raise SeraError(f"{source.name} and {target.name} share utterance ids ({sorted(clash)[0]}, ...): "
                        "rename one corpus's files")
    fold = Fold(f"{source.name} -> {target.name}", frozenset(u.id for u in target.utterances))
    fs = features(source, cfg, progress)[0] + features(target, cfg, progress)[0]
    return source, [fold], fs


def feature_cache(cfg: SeraConfig, key: str | None = None, augment: Augmentation | None = None) -> FeatureCache:
    """The cache of ``cfg``'s encoder at the frame rate training reads (``model.frame_stride``), of whole clips
    or, with ``vad.trim``, of their speech spans; with ``augment``, of that augmented copy of each clip."""
    return FeatureCache(cfg.cache_dir, key or encoder_identity(cfg.encoder)[0], cfg.model.frame_stride,
                        cfg.vad if cfg.vad.trim else None, augment)


def features(corpus: Corpus, cfg: SeraConfig, progress: bool = True,
             augment: Augmentation | None = None) -> tuple[FeatureSet, str]:
    """Cached features of ``corpus`` (not normalised: ``cross_validate`` needs them as a single clip
    arrives, and ``normalise`` makes the training view) and the encoder's key; what is not cached
    yet is extracted first. With ``vad.pool_speech`` each clip carries its speech frames; with
    ``augment``, the features are of each clip's augmented copy."""
    cache = feature_cache(cfg, augment=augment)
    try:
        fs = load_feature_set(corpus, cache, progress=progress)
    except CacheError:  # some utterances never extracted: extract (cached ones are skipped), then load
        report = extract(corpus.utterances, Encoder(cfg.encoder), cache, cfg.audio, progress=progress)
        if progress:
            print(report.summary(), flush=True)
        fs = load_feature_set(corpus, cache, progress=progress)
    if cfg.vad.pool_speech:
        fs = speech_masks(fs, cache, cfg.vad, cfg.audio, progress)
    return fs, cache.encoder_key


def pretrain_corpora(cfg: SeraConfig) -> list[str]:
    return name_list(cfg.train.pretrain_corpora)


def unlabelled_features(cfg: SeraConfig, progress: bool = True, corpus: Corpus | None = None) -> FeatureSet | None:
    """Audio of the corpora in ``train.pretrain_corpora``, of the folders in ``train.pretrain_audio`` and the
    augmented copies (``train.pretrain_augment``) of ``corpus``'s clips: more material for stage 1, labels unused
    (normalised as training features are). A copy keeps its clip's utterance id, so a fold leaves its test clips'
    copies out (``run_fold``); a folder holding the corpus's own files is refused."""
    if cfg.train.pretrain_augment and corpus is None:
        raise SeraError("train.pretrain_augment: augmented copies need the corpus they are copies of")
    sets = _copies(corpus, cfg, cfg.train.pretrain_augment, progress) if corpus is not None else []
    for name in pretrain_corpora(cfg):
        if name in cfg.data.corpus.split(CORPUS_JOIN):
            raise SeraError(f"train.pretrain_corpora: {name} is the corpus being evaluated; stage 1 already sees "
                            "its training folds, and all of it would leak the test folds")
        other = copy.deepcopy(cfg)
        other.data.corpus, other.data.classes = name, ""
        sets.append(normalise(features(load_corpus(other.data), other, progress)[0], cfg.data.normalise))
    for folder in name_list(cfg.train.pretrain_audio):
        audio = read_unlabelled(Path(folder).expanduser())
        _refuse_corpus_files(audio, corpus)
        sets.append(normalise(features(audio, cfg, progress)[0], cfg.data.normalise))
    return sum(sets[1:], sets[0]) if sets else None


def _refuse_corpus_files(audio: Corpus, corpus: Corpus | None) -> None:
    """Stage 1 on a test clip's own audio would let the clip protocol see it before it is scored."""
    if corpus is None:
        return
    mine = {u.path.resolve() for u in corpus.utterances}
    shared = [u.path for u in audio.utterances if u.path.resolve() in mine]
    if shared:
        raise SeraError(f"train.pretrain_audio: {audio.root} holds {len(shared)} files of the corpus being evaluated "
                        f"({shared[0]}, ...); their audio would reach stage 1 in the folds that test them: name a "
                        "folder without them (train.pretrain_corpora adds another corpus safely)")


def labelled_copies(cfg: SeraConfig, corpus: Corpus, progress: bool = True) -> FeatureSet | None:
    """The augmented copies ``train.finetune_augment`` names of every clip of ``corpus``, with their clips'
    labels and ids, normalised as training features are; None without any. Each fold keeps the copies of its
    training clips alone (``evaluate.run_fold``)."""
    sets = _copies(corpus, cfg, cfg.train.finetune_augment, progress)
    return sum(sets[1:], sets[0]) if sets else None


def _copies(corpus: Corpus, cfg: SeraConfig, names: str, progress: bool) -> list[FeatureSet]:
    """``corpus``'s augmented copies ``names`` lists (``augment.parse_copies``), each set a FeatureSet normalised
    as training features are."""
    sets = []
    for copy_set in parse_copies(names):
        parts = [features(corpus.subset(utts), cfg, progress, a)[0] for a, utts in copy_set.split(corpus.utterances)]
        sets.append(normalise(sum(parts[1:], parts[0]), cfg.data.normalise))
    return sets


def train_final(fs: FeatureSet, cfg: SeraConfig, num_classes: int, epochs: int, progress: bool = True,
                unlabelled: FeatureSet | None = None, state: Path | None = None,
                log: Callable[[dict], None] | None = None, copies: FeatureSet | None = None):
    """Both stages on every speaker, stage 2 for a fixed number of epochs (chosen by cross-validation), on
    ``copies`` too (``labelled_copies``). ``log`` gets each epoch's record of either stage.

    Returns the classifier and its frames' local attributes (for the pictures)."""
    L, _, D = fs.feats[0].shape
    init = attrs = None
    if uses_stage1(cfg):
        init, attrs = stage1(fs, cfg, progress, state / "final" / "adapter" if state else None, unlabelled, log)
    labelled = fs + copies if copies is not None else fs
    model, _ = finetune(labelled, None, cfg, L, D, num_classes, init=init, attrs=attrs, epochs=epochs,
                        progress=progress, log=log, resume=state / "final" / "stage2-progress.pt" if state else None)
    if model.probe is not None:
        model.probe.fit(probe_view(labelled, cfg.model.probe_view).feats, labelled.labels.numpy(), cfg.seed)
    return model, final_attributes(model, fs, cfg, attrs)


def final_stage1_beside(fs: FeatureSet, cfg: SeraConfig, unlabelled: FeatureSet | None,
                        state: Path) -> multiprocessing.Process | None:
    """Start the final model's stage 1 (``fs`` normalised as training reads it) in a forked process, to
    run while the cross-validation folds train. It needs no cross-validation result, and with
    ``train.jobs`` > 1 the folds leave cores idle while the last ones finish: it runs at the lowest
    priority, so it takes those cores and hardly slows the folds (at normal priority three processes
    on two cores slowed the first folds' stage 1 by half). When the folds are done the caller stops it
    rather than wait (on a busy machine it may have had no CPU at all): ``train_final`` with the same
    ``state`` loads its result, or goes on from its last finished epoch. None where it would not pay:
    one job, a GPU, no stage 1, or already saved."""
    saved = state / "final" / "adapter"
    if cfg.train.jobs <= 1 or torch.cuda.is_available() or not uses_stage1(cfg) or (saved / "config.json").is_file():
        return None
    proc = multiprocessing.get_context("fork").Process(target=_stage1_alone, args=(fs, cfg, saved, unlabelled),
                                                       name="final stage 1", daemon=True)
    proc.start()
    return proc


def _stage1_alone(fs: FeatureSet, cfg: SeraConfig, saved: Path, unlabelled: FeatureSet | None) -> None:
    torch.set_num_threads(1)  # a fold worker's share
    if hasattr(os, "nice"):
        os.nice(19)  # idle cores only, while folds run
    parent = os.getppid()

    def orphaned(record: dict) -> None:  # a killed `sera train` leaves no stage 1 behind to race its rerun's
        if os.getppid() != parent:       # (the epoch just ended is saved: the rerun goes on from it)
            os._exit(1)

    stage1(fs, cfg, False, saved, unlabelled, log=orphaned)


def final_epochs(best_epochs: list[int]) -> int:
    return max(1, round(statistics.median(best_epochs)))
