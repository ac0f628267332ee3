"""Speaker-independent cross-validation folds, the way each corpus is evaluated in the literature.

A test fold never shares a speaker with its training data; the only exception is the explicit
speaker-dependent split, which marks itself in every fold (and so in every result).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import DataConfig
from ..errors import CorpusError
from .corpora import CORPORA, CORPUS_JOIN, Corpus, parts_of



@dataclass(frozen=True)
class Fold:
    name: str  # e.g. "speakers 01-06" or "session Ses01"
    test_ids: frozenset[str]  # utterance ids held out
    speaker_independent: bool = True  # False only for the explicit random split

    def split(self, corpus: Corpus) -> tuple[Corpus, Corpus]:
        """(train, test) parts of ``corpus``."""
        train = [u for u in corpus.utterances if u.id not in self.test_ids]
        test = [u for u in corpus.utterances if u.id in self.test_ids]
        return corpus.subset(train), corpus.subset(test)


def make_folds(corpus: Corpus, cfg: DataConfig | None = None, seed: int = 0) -> list[Fold]:
    cfg = cfg or DataConfig()
    if cfg.folds:
        return read_folds(cfg.folds, corpus)
    if cfg.speaker_dependent:
        return _random_folds(corpus, cfg.num_folds, seed)
    if CORPUS_JOIN in corpus.name:
        return _combined_folds(corpus, cfg, seed)
    if corpus.name == "iemocap":  # leave one session out
        groups = _group_by(corpus, lambda s: s[:5])
        return [_fold(corpus, f"session {name}", speakers) for name, speakers in groups.items()]
    if any(u.split == "test" for u in corpus.utterances):
        return [_given_split(corpus)]
    standard = CORPORA[corpus.name].folds if corpus.name in CORPORA else None  # consecutive sorted speaker groups
    k = standard or cfg.num_folds
    speakers = corpus.speakers
    if len(speakers) < 2:
        raise CorpusError(f"{corpus.name}: speaker-independent folds need at least 2 speakers, found {len(speakers)}")
    k = min(k, len(speakers))
    if standard:
        groups_ = [list(g) for g in np.array_split(np.array(speakers), k)]
    else:
        groups_ = [speakers[i::k] for i in range(k)]
    return [_fold(corpus, f"speakers {_names(g)}", g) for g in groups_]


def _combined_folds(corpus: Corpus, cfg: DataConfig, seed: int) -> list[Fold]:
    """Fold i holds each part's own fold i (RAVDESS has 4, EmoDB 5: the fifth is EmoDB's alone), so
    each corpus's test clips are the ones its single-corpus folds test, and its figures compare."""
    per_part = []
    for name in parts_of(corpus):
        mine = [u for u in corpus.utterances if u.speaker.startswith(f"{name}:")]
        alone = Corpus(name, [dataclasses.replace(u, speaker=u.speaker.split(":", 1)[1]) for u in mine], corpus.labels)
        per_part.append([(name, f) for f in make_folds(alone, cfg, seed)])
    folds = []
    for group in itertools.zip_longest(*per_part):
        group = [g for g in group if g is not None]
        ids = frozenset(i for _, f in group for i in f.test_ids)  # already prefixed with the corpus
        folds.append(Fold(" + ".join(f"{name} {f.name}" for name, f in group), ids,
                          all(f.speaker_independent for _, f in group)))
    return folds


def read_folds(path: str | Path, corpus: Corpus) -> list[Fold]:
    """Folds another benchmark uses, for comparable figures: a JSON file whose ``test_speakers`` (or
    ``test_actors``, as in ``../shared/folds/emobox-ravdess.json``) lists each fold's test speakers."""
    try:
        spec = json.loads(Path(path).read_text())
        groups = spec.get("test_speakers", spec.get("test_actors"))
    except (OSError, json.JSONDecodeError, AttributeError) as e:
        raise CorpusError(f"{path}: not a readable folds file ({e})") from None
    if not isinstance(groups, list) or not groups or not all(isinstance(g, list) and g for g in groups):
        raise CorpusError(f"{path}: expected \"test_speakers\": a list of folds, each a list of speaker ids")
    known = set(corpus.speakers)
    for g in groups:
        missing = sorted(set(map(str, g)) - known)
        if missing:
            raise CorpusError(f"{path}: speaker(s) {', '.join(missing)} are not in {corpus.name} "
                              f"(its speakers: {', '.join(corpus.speakers[:8])}, ...)")
    return [_fold(corpus, f"{i + 1}: {'+'.join(map(str, g))}", [str(x) for x in g]) for i, g in enumerate(groups)]


def _names(speakers: list[str]) -> str:
    if len(speakers) > 2 and all(s.isdigit() for s in speakers):
        return f"{speakers[0]}-{speakers[-1]}"
    return "+".join(speakers)


def _group_by(corpus: Corpus, key) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for s in corpus.speakers:
        groups.setdefault(key(s), []).append(s)
    return groups


def _fold(corpus: Corpus, name: str, test_speakers: list[str]) -> Fold:
    held = set(test_speakers)
    return Fold(name, frozenset(u.id for u in corpus.utterances if u.speaker in held))


def _given_split(corpus: Corpus) -> Fold:
    """A manifest's own test split; speaker-independent only if no test speaker is trained on."""
    test = [u for u in corpus.utterances if u.split == "test"]
    train_speakers = {u.speaker for u in corpus.utterances if u.split != "test"}
    independent = not any(u.speaker in train_speakers for u in test)
    return Fold("manifest test split", frozenset(u.id for u in test), independent)


def _random_folds(corpus: Corpus, k: int, seed: int) -> list[Fold]:
    from sklearn.model_selection import StratifiedKFold

    y = corpus.label_ids()
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    ids = [u.id for u in corpus.utterances]
    return [
        Fold(f"random split {i + 1}/{k} (SPEAKER-DEPENDENT)", frozenset(ids[j] for j in test), False)
        for i, (_, test) in enumerate(skf.split(np.zeros(len(y)), y))
    ]
