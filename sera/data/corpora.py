"""Corpus readers: each turns a corpus folder in its original layout into utterance records.

Readers only parse names and label files; audio is decoded later (``sera.audio``), so reading
a corpus is fast and a broken audio file surfaces where it is used, named.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf

from ..config import DataConfig
from ..errors import CorpusError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aif", ".aiff", ".opus")


@dataclass(frozen=True)
class Utterance:
    id: str  # unique within its corpus: the path below the corpus folder, without extension
    path: Path
    label: str
    speaker: str
    corpus: str
    duration: float  # seconds, from the file header; 0.0 when the header is unreadable
    split: str = ""  # a manifest's own split column (train / valid / test), else ""


@dataclass
class Corpus:
    name: str  # "ravdess", "emodb", "iemocap", "crema-d", "manifest" or "folder"
    utterances: list[Utterance]
    labels: list[str]  # class names in a fixed order: index = class id
    root: Path = field(default_factory=Path)

    def label_ids(self) -> list[int]:
        index = {c: i for i, c in enumerate(self.labels)}
        return [index[u.label] for u in self.utterances]

    @property
    def speakers(self) -> list[str]:
        return sorted({u.speaker for u in self.utterances})

    def subset(self, keep: Iterable[Utterance]) -> "Corpus":
        return Corpus(self.name, list(keep), self.labels, self.root)

    def summary(self) -> str:
        hours = sum(u.duration for u in self.utterances) / 3600
        counts = {c: 0 for c in self.labels}
        for u in self.utterances:
            counts[u.label] += 1
        per_class = ", ".join(f"{c} {n}" for c, n in counts.items())
        return (
            f"{self.name}: {len(self.utterances)} utterances ({hours * 60:.1f} min), "
            f"{len(self.speakers)} speakers, {len(self.labels)} classes: {per_class}"
        )


# --- helpers ---------------------------------------------------------------------------------


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())


def _duration(path: Path) -> float:
    try:
        info = sf.info(str(path))
        return info.frames / info.samplerate
    except Exception:
        return 0.0


def _utt(root: Path, path: Path, label: str, speaker: str, corpus: str, split: str = "") -> Utterance:
    uid = path.relative_to(root).with_suffix("").as_posix() if path.is_relative_to(root) else path.stem
    return Utterance(uid, path, label, speaker, corpus, _duration(path), split)


def _require_dir(path: Path, corpus: str, hint: str) -> Path:
    if not path.is_dir():
        raise CorpusError(f"{path}: no {corpus} folder here ({hint}); set SERA_DATA or --data")
    return path


# --- the corpora -----------------------------------------------------------------------------

RAVDESS_EMOTIONS = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]


def read_ravdess(root: Path) -> Corpus:
    """RAVDESS speech: ``Actor_XX/03-01-EE-II-SS-RR-AA.wav``; the speaker is the actor id."""
    _require_dir(root, "RAVDESS", "expected Actor_01 ... Actor_24 inside")
    utts = []
    for path in _audio_files(root):
        parts = path.stem.split("-")
        if len(parts) != 7 or not all(p.isdigit() for p in parts):
            raise CorpusError(f"{path}: not a RAVDESS file name (MM-VV-EE-II-SS-RR-AA)")
        modality, channel, emotion = parts[0], parts[1], int(parts[2])
        if modality != "03" or channel != "01":
            continue  # video or song files: sera uses the audio-only speech part
        if not 1 <= emotion <= len(RAVDESS_EMOTIONS):
            raise CorpusError(f"{path}: unknown RAVDESS emotion code {parts[2]}")
        utts.append(_utt(root, path, RAVDESS_EMOTIONS[emotion - 1], parts[6], "ravdess"))
    return Corpus("ravdess", utts, list(RAVDESS_EMOTIONS), root)


EMODB_EMOTIONS = {"W": "anger", "L": "boredom", "E": "disgust", "A": "fear", "F": "happiness", "T": "sadness", "N": "neutral"}


def read_emodb(root: Path) -> Corpus:
    """EmoDB: ``wav/SSTTTEV.wav`` = speaker, text, emotion letter, version."""
    folder = root / "wav" if (root / "wav").is_dir() else _require_dir(root, "EmoDB", "expected wav/ inside")
    utts = []
    for path in _audio_files(folder):
        stem = path.stem
        if len(stem) != 7 or not stem[:2].isdigit():
            raise CorpusError(f"{path}: not an EmoDB file name (SSTTTEV)")
        if stem[5] not in EMODB_EMOTIONS:
            raise CorpusError(f"{path}: unknown EmoDB emotion letter {stem[5]!r}")
        utts.append(_utt(root, path, EMODB_EMOTIONS[stem[5]], stem[:2], "emodb"))
    return Corpus("emodb", utts, sorted(set(EMODB_EMOTIONS.values())), root)


IEMOCAP_4CLASS = "neu=neutral,hap=happy,exc=happy,sad=sad,ang=angry"  # the standard 5531-utterance set
_IEMOCAP_LINE = re.compile(r"^\[(\d+\.?\d*) - (\d+\.?\d*)\]\t(\S+)\t(\S+)\t")


def read_iemocap(root: Path) -> Corpus:
    """IEMOCAP: labels from ``SessionN/dialog/EmoEvaluation/*.txt``, audio in ``sentences/wav``.

    The speaker is session + the gender letter of the turn (``Ses01F_impro01_M000`` is spoken
    by ``Ses01M``), which is what leave-one-session-out needs.
    """
    _require_dir(root, "IEMOCAP", "expected Session1 ... Session5 inside")
    utts = []
    for session in range(1, 6):
        label_dir = root / f"Session{session}" / "dialog" / "EmoEvaluation"
        if not label_dir.is_dir():
            continue
        for txt in sorted(label_dir.glob("*.txt")):
            for line in txt.read_text(errors="replace").splitlines():
                m = _IEMOCAP_LINE.match(line)
                if not m:
                    continue
                turn, label = m.group(3), m.group(4)
                dialog = turn.rsplit("_", 1)[0]
                wav = root / f"Session{session}" / "sentences" / "wav" / dialog / f"{turn}.wav"
                if not wav.is_file():
                    raise CorpusError(f"{txt}: labels {turn}, but {wav} does not exist")
                speaker = turn[:5] + turn.rsplit("_", 1)[1][0]
                utts.append(_utt(root, wav, label, speaker, "iemocap"))
    if not utts:
        raise CorpusError(f"{root}: no IEMOCAP label files (SessionN/dialog/EmoEvaluation/*.txt)")
    return Corpus("iemocap", utts, sorted({u.label for u in utts}), root)


CREMAD_EMOTIONS = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}


def read_cremad(root: Path) -> Corpus:
    """CREMA-D: ``AudioWAV/AAAA_SSS_EEE_LL.wav`` = actor (1001-1091), sentence, emotion, level."""
    folder = root / "AudioWAV" if (root / "AudioWAV").is_dir() else _require_dir(root, "CREMA-D", "expected AudioWAV/")
    utts = []
    for path in _audio_files(folder):
        parts = path.stem.split("_")
        if len(parts) != 4 or not parts[0].isdigit():
            raise CorpusError(f"{path}: not a CREMA-D file name (AAAA_SSS_EEE_LL)")
        if parts[2] not in CREMAD_EMOTIONS:
            raise CorpusError(f"{path}: unknown CREMA-D emotion code {parts[2]!r}")
        utts.append(_utt(root, path, CREMAD_EMOTIONS[parts[2]], parts[0], "crema-d"))
    return Corpus("crema-d", utts, sorted(CREMAD_EMOTIONS.values()), root)


def read_manifest(csv_path: Path, allow_outside_root: bool = False) -> Corpus:
    """A CSV with a header ``path,label,speaker[,split]``; paths are relative to the CSV's folder."""
    root = csv_path.parent.resolve()
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
            header = set(rows[0]) if rows else set()
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise CorpusError(f"{csv_path}: not a readable CSV manifest ({e})") from None
    missing = {"path", "label", "speaker"} - header
    if not rows or missing:
        raise CorpusError(f"{csv_path}: a manifest needs a header with path,label,speaker[,split] and rows; "
                          f"missing {', '.join(sorted(missing)) or 'rows'}")
    utts = []
    for line, row in enumerate(rows, start=2):
        rel, label, speaker = (row.get(k) or "" for k in ("path", "label", "speaker"))
        if not rel.strip() or not label.strip() or not speaker.strip():
            raise CorpusError(f"{csv_path}, line {line}: empty path, label or speaker")
        path = (root / rel.strip()).resolve()
        if not allow_outside_root and not path.is_relative_to(root):
            raise CorpusError(f"{csv_path}, line {line}: {rel} points outside the manifest's folder "
                              "(set DataConfig.allow_outside_root / --allow-outside-root to permit it)")
        split = (row.get("split") or "").strip().lower()
        utts.append(_utt(root, path, label.strip(), speaker.strip(), "manifest", split))
    return Corpus("manifest", utts, sorted({u.label for u in utts}), root)


_SPEAKER_PREFIX = re.compile(r"^[^_\-\s.]+")


def read_label_folders(root: Path) -> Corpus:
    """One subfolder per label; the speaker is the file name up to its first ``_`` or ``-``."""
    _require_dir(root, "label-folder corpus", "expected one subfolder per label")
    utts = []
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in _audio_files(label_dir):
            speaker = _SPEAKER_PREFIX.match(path.stem)
            utts.append(_utt(root, path, label_dir.name, speaker.group(0) if speaker else path.stem, "folder"))
    if not utts:
        raise CorpusError(f"{root}: no audio files in label subfolders")
    return Corpus("folder", utts, sorted({u.label for u in utts}), root)


UNLABELLED = "(unlabelled)"  # the one "class" of audio read for stage 1 alone


def read_unlabelled(root: Path) -> Corpus:
    """Every audio file below ``root`` (recursively), for stage 1, which needs no labels. The speaker is the
    file's folder (speaker normalisation groups by it); an id is the path below ``root``, as a corpus's is, so
    a copy of the corpus being evaluated keeps its clips' ids and a fold leaves its test clips' copies out."""
    _require_dir(root, "unlabelled audio", "expected audio files in it or in its subfolders")
    utts = [_utt(root, path, UNLABELLED, path.parent.relative_to(root).as_posix(), f"audio:{root.name}")
            for path in _audio_files(root)]
    if not utts:
        raise CorpusError(f"{root}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) in it or its subfolders")
    return Corpus(f"audio:{root.name}", utts, [UNLABELLED], root)


# --- the registry ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Source:
    """Where ``sera download`` fetches a public corpus, and how it knows the archive is whole."""

    title: str
    url: str  # the archive
    record: str  # a JSON record stating the archive's size and checksum (Zenodo's API); "" if none is published
    marker: str  # a folder (glob) inside the corpus folder that only a complete corpus has


@dataclass(frozen=True)
class CorpusRecord:
    """Everything sera knows of a corpus, in one place: where it lives, how it is read, its classes and
    folds, where it comes from and on what terms."""

    folder: str  # below SERA_DATA
    reader: Callable[[Path], Corpus]
    licence: str
    citation: str
    classes: str = ""  # the class map it is read with by default ("" keeps its own classes)
    folds: int | None = None  # speaker-independent folds: consecutive groups of its sorted speakers (None:
    #                           data.num_folds, speakers dealt round-robin; IEMOCAP: leave one session out)
    source: Source | None = None  # where `sera download` fetches it; None: from its publisher by agreement


CORPORA: dict[str, CorpusRecord] = {
    "ravdess": CorpusRecord(
        "ravdess", read_ravdess, "CC BY-NC-SA 4.0: non-commercial use, cite the paper",
        "Livingstone & Russo 2018, PLoS ONE 13(5), doi:10.1371/journal.pone.0196391; data doi:10.5281/zenodo.1188976",
        folds=4, source=Source("RAVDESS speech (24 actors, 1440 clips)",
                               "https://zenodo.org/records/1188976/files/Audio_Speech_Actors_01-24.zip?download=1",
                               "https://zenodo.org/api/records/1188976", "Actor_*")),
    "emodb": CorpusRecord(
        "emodb", read_emodb, "free for research use: cite the paper",
        "Burkhardt et al. 2005, A database of German emotional speech, Interspeech (emodb.bilderbar.info)",
        folds=5, source=Source("Berlin Database of Emotional Speech (10 speakers, 535 clips)",
                               "http://emodb.bilderbar.info/download/download.zip",
                               "",  # the publisher states no checksum: the archive's own CRCs and file count are checked
                               "wav")),
    "iemocap": CorpusRecord(
        "iemocap", read_iemocap, "by agreement with USC SAIL (sail.usc.edu/iemocap), research use",
        "Busso et al. 2008, IEMOCAP: interactive emotional dyadic motion capture database, LRE 42(4)",
        classes=IEMOCAP_4CLASS),
    "crema-d": CorpusRecord(
        "crema-d", read_cremad, "Open Database License (ODbL) 1.0",
        "Cao et al. 2014, CREMA-D: crowd-sourced emotional multimodal actors dataset, IEEE Trans. Affective Computing"),
}


def parse_class_map(spec: str) -> dict[str, str]:
    """``"neu=neutral,hap=happy,exc=happy,sad"`` -> raw label -> class; unlisted labels are dropped."""
    mapping: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        raw, _, target = item.partition("=")
        mapping[raw.strip()] = (target or raw).strip()
    return mapping


def apply_class_map(corpus: Corpus, spec: str) -> Corpus:
    mapping = parse_class_map(spec)
    if not mapping:
        return corpus
    present = {u.label for u in corpus.utterances}
    unknown = sorted(set(mapping) - present)
    if unknown:
        raise CorpusError(f"class map names label(s) {', '.join(unknown)} that {corpus.name} does not have; "
                          f"its labels are {', '.join(sorted(present))}")
    utts = [_relabel(u, mapping[u.label]) for u in corpus.utterances if u.label in mapping]
    return Corpus(corpus.name, utts, list(dict.fromkeys(mapping.values())), corpus.root)


def _relabel(u: Utterance, label: str) -> Utterance:
    return Utterance(u.id, u.path, label, u.speaker, u.corpus, u.duration, u.split)


# One label set across corpora, so that they can be tested against each other: each corpus's own
# label name -> the unified name (RAVDESS's words). Labels not listed keep their own name.
UNIFIED_LABELS = {
    "anger": "angry", "ang": "angry", "happiness": "happy", "hap": "happy", "sadness": "sad",
    "fear": "fearful", "fea": "fearful", "disgusted": "disgust", "dis": "disgust", "neu": "neutral",
    "surprise": "surprised", "sur": "surprised",
}


def unified_label(label: str) -> str:
    return UNIFIED_LABELS.get(label.lower(), label.lower())


def shared_labels(a: Corpus, b: Corpus) -> tuple[Corpus, Corpus]:
    """Both corpora relabelled with unified names and kept to the emotions both have (``a``'s order)."""
    theirs = {unified_label(c) for c in b.labels}
    labels = [c for c in dict.fromkeys(unified_label(c) for c in a.labels) if c in theirs]
    if not labels:
        raise CorpusError(f"{a.name} ({', '.join(a.labels)}) and {b.name} ({', '.join(b.labels)}) share no emotion")

    def keep(corpus: Corpus) -> Corpus:
        utts = [_relabel(u, unified_label(u.label)) for u in corpus.utterances if unified_label(u.label) in labels]
        return Corpus(corpus.name, utts, labels, corpus.root)

    return keep(a), keep(b)


CORPUS_JOIN = "+"  # "ravdess+emodb": several corpora trained on as one


def combine(corpora: list[Corpus]) -> Corpus:
    """One corpus of several, under unified label names (their union, in order of appearance).

    Speakers and ids are prefixed with their corpus ("emodb:03"), so RAVDESS's actor 03 and EmoDB's
    speaker 03 stay two people; ``Utterance.corpus`` keeps where each clip came from."""
    names = [c.name for c in corpora]
    if len(set(names)) < len(names):
        raise CorpusError(f"{CORPUS_JOIN.join(names)}: a corpus is named twice")
    utts = [Utterance(f"{c.name}:{u.id}", u.path, unified_label(u.label), f"{c.name}:{u.speaker}", u.corpus,
                      u.duration, u.split) for c in corpora for u in c.utterances]
    labels = list(dict.fromkeys(unified_label(label) for c in corpora for label in c.labels))
    return Corpus(CORPUS_JOIN.join(names), utts, labels, Path(os.path.commonpath([str(c.root) for c in corpora])))


def parts_of(corpus: Corpus) -> list[str]:
    """The corpora a (combined) corpus is made of, in order."""
    return corpus.name.split(CORPUS_JOIN)


def load_corpus(cfg: DataConfig | None = None, **overrides: str) -> Corpus:
    """Read the corpus that ``cfg`` names (a registered name, a manifest .csv, a label-folder path, or
    several of these joined by "+", read with their own class maps and then combined)."""
    cfg = cfg or DataConfig()
    name = overrides.get("corpus", cfg.corpus)
    classes = overrides.get("classes", cfg.classes)
    key = name.lower()
    if CORPUS_JOIN in name:
        corpus = combine([load_corpus(cfg, corpus=part.strip(), classes="") for part in name.split(CORPUS_JOIN)])
    elif key in CORPORA:
        record = CORPORA[key]
        corpus = record.reader(Path(cfg.root) / record.folder)
        classes = classes or record.classes
    elif name.lower().endswith(".csv"):
        path = Path(name)
        if not path.is_file():
            raise CorpusError(f"{name}: no such manifest")
        corpus = read_manifest(path, cfg.allow_outside_root)
    elif Path(name).is_dir():
        corpus = read_label_folders(Path(name))
    else:
        raise CorpusError(f"unknown corpus {name!r}: use one of {', '.join(CORPORA)}, a manifest .csv, "
                          "or a folder with one subfolder per label")
    if not corpus.utterances:
        raise CorpusError(f"{corpus.root}: no {corpus.name} audio files found")
    return apply_class_map(corpus, classes)
