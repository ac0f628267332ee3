"""Corpora and their speaker-independent folds."""

from .corpora import (
    AUDIO_EXTENSIONS,
    CORPORA,
    UNLABELLED,
    Corpus,
    Utterance,
    apply_class_map,
    combine,
    load_corpus,
    parse_class_map,
    parts_of,
    read_cremad,
    read_emodb,
    read_iemocap,
    read_label_folders,
    read_manifest,
    read_ravdess,
    read_unlabelled,
    shared_labels,
    unified_label,
)
from .folds import Fold, make_folds

__all__ = [
    "AUDIO_EXTENSIONS", "CORPORA", "UNLABELLED", "Corpus", "Fold", "Utterance", "apply_class_map", "combine", "load_corpus",
    "make_folds", "parse_class_map", "parts_of", "read_cremad", "read_emodb", "read_iemocap", "read_label_folders",
    "read_manifest", "read_ravdess", "read_unlabelled", "shared_labels", "unified_label",
]
