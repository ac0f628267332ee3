"""Every reader, on the real corpora in ../shared or on tiny layouts built in the real formats."""

from collections import Counter
from pathlib import Path

import pytest

from conftest import write_audio
from sera.config import DataConfig
from sera.data import load_corpus, make_folds, read_cremad, read_iemocap, read_manifest
from sera.errors import CorpusError

HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"


def _iemocap(root: Path) -> Path:
    """Two sessions; labels include ones the 4-class set drops (fru, xxx) and exc merged into happy."""
    turns = {
        1: [("Ses01F_impro01", "F000", "neu"), ("Ses01F_impro01", "M000", "exc"), ("Ses01F_impro01", "F001", "fru"),
            ("Ses01M_script01_1", "M002", "hap"), ("Ses01M_script01_1", "F003", "ang")],
        2: [("Ses02F_impro02", "F000", "sad"), ("Ses02F_impro02", "M001", "xxx"), ("Ses02F_impro02", "M002", "ang")],
    }
    for session, items in turns.items():
        lines_by_dialog: dict[str, list[str]] = {}
        for i, (dialog, tail, label) in enumerate(items):
            turn = f"{dialog}_{tail}"
            write_audio(root / f"Session{session}/sentences/wav/{dialog}/{turn}.wav", 1.0, seed=10 * session + i)
            lines_by_dialog.setdefault(dialog, []).append(
                f"[{i}.0000 - {i}.9000]\t{turn}\t{label}\t[2.5000, 3.0000, 2.0000]\nC-E2:\tNeutral;\t()\n\n"
            )
        evaluation = root / f"Session{session}/dialog/EmoEvaluation"
        evaluation.mkdir(parents=True)
        for dialog, lines in lines_by_dialog.items():
            (evaluation / f"{dialog}.txt").write_text(HEADER + "".join(lines))
    return root


def test_iemocap_four_class_set_and_sessions(tmp_path):
    _iemocap(tmp_path / "iemocap")
    corpus = load_corpus(DataConfig(root=str(tmp_path), corpus="iemocap"))
    assert corpus.labels == ["neutral", "happy", "sad", "angry"]
    assert Counter(u.label for u in corpus.utterances) == {"neutral": 1, "happy": 2, "sad": 1, "angry": 2}
    by_id = {u.id.rsplit("/", 1)[1]: u for u in corpus.utterances}
    assert by_id["Ses01F_impro01_M000"].speaker == "Ses01M"  # the turn's own gender letter, not the dialog's
    assert by_id["Ses01F_impro01_M000"].label == "happy"  # exc merged into happy
    assert by_id["Ses01M_script01_1_F003"].speaker == "Ses01F"
    assert all(u.duration == pytest.approx(1.0) for u in corpus.utterances)
    folds = make_folds(corpus)
    assert [f.name for f in folds] == ["session Ses01", "session Ses02"]
    assert sorted(len(f.test_ids) for f in folds) == [2, 4]


def test_iemocap_missing_wav_is_named(tmp_path):
    root = _iemocap(tmp_path / "iemocap")
    victim = root / "Session2/sentences/wav/Ses02F_impro02/Ses02F_impro02_F000.wav"
    victim.unlink()
    with pytest.raises(CorpusError, match="Ses02F_impro02_F000.wav does not exist"):
        read_iemocap(root)


def test_cremad(tmp_path):
    root = tmp_path / "crema-d" / "AudioWAV"
    for i, (actor, emo) in enumerate([(1001, "ANG"), (1001, "SAD"), (1002, "HAP"), (1003, "NEU"), (1091, "FEA")]):
        write_audio(root / f"{actor}_DFA_{emo}_XX.wav", 0.5, seed=i)
    corpus = load_corpus(DataConfig(root=str(tmp_path), corpus="crema-d", num_folds=2))
    assert len(corpus.utterances) == 5 and corpus.speakers == ["1001", "1002", "1003", "1091"]
    assert {u.label for u in corpus.utterances} == {"anger", "sad", "happy", "neutral", "fear"}
    folds = make_folds(corpus, DataConfig(num_folds=2))
    assert len(folds) == 2 and all(f.speaker_independent for f in folds)
    write_audio(root / "1004_DFA_XYZ_XX.wav", 0.5)
    with pytest.raises(CorpusError, match="1004_DFA_XYZ_XX.wav: unknown CREMA-D emotion code"):
        read_cremad(tmp_path / "crema-d")


def test_ravdess_real(data_root):
    corpus = load_corpus(DataConfig(root=str(data_root), corpus="ravdess"))
    assert len(corpus.utterances) == 1440 and len(corpus.speakers) == 24
    counts = Counter(u.label for u in corpus.utterances)
    assert counts["neutral"] == 96 and all(counts[c] == 192 for c in corpus.labels if c != "neutral")
    assert abs(sum(u.duration for u in corpus.utterances) / 60 - 88.8) < 0.1
    four = load_corpus(DataConfig(root=str(data_root), corpus="ravdess", classes="neutral,happy,sad,angry"))
    assert four.labels == ["neutral", "happy", "sad", "angry"] and len(four.utterances) == 96 + 3 * 192
    folds = make_folds(corpus)
    assert [f.name for f in folds] == ["speakers 01-06", "speakers 07-12", "speakers 13-18", "speakers 19-24"]


def test_emodb_real(data_root):
    corpus = load_corpus(DataConfig(root=str(data_root), corpus="emodb"))
    assert len(corpus.utterances) == 535 and corpus.speakers == ["03", "08", "09", "10", "11", "12", "13", "14", "15", "16"]
    assert Counter(u.label for u in corpus.utterances)["anger"] == 127
    names = [f.name for f in make_folds(corpus)]
    assert names == ["speakers 03+08", "speakers 09+10", "speakers 11+12", "speakers 13+14", "speakers 15+16"]


def test_two_corpora_as_one_keep_each_corpus_folds(data_root):
    both = load_corpus(DataConfig(root=str(data_root), corpus="ravdess+emodb"))
    assert len(both.utterances) == 1440 + 535 and len(both.speakers) == 34  # RAVDESS's 03 and EmoDB's 03: two people
    assert both.labels == ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised", "boredom"]
    assert Counter(u.label for u in both.utterances)["angry"] == 192 + 127  # EmoDB's anger, unified
    folds = make_folds(both)
    assert len(folds) == 5 and folds[4].name == "emodb speakers 15+16"
    for name in ("ravdess", "emodb"):  # each corpus's clips are tested in the folds its own CV tests them
        alone = load_corpus(DataConfig(root=str(data_root), corpus=name))
        for mine, joint in zip(make_folds(alone), folds):
            assert {f"{name}:{i}" for i in mine.test_ids} == {i for i in joint.test_ids if i.startswith(name)}
    four = load_corpus(DataConfig(root=str(data_root), corpus="ravdess+emodb", classes="neutral,happy,sad,angry"))
    assert len(four.utterances) == 96 + 3 * 192 + 79 + 71 + 62 + 127
    with pytest.raises(CorpusError, match="named twice"):
        load_corpus(DataConfig(root=str(data_root), corpus="emodb+emodb"))


@pytest.mark.parametrize("corpus_name", ["ravdess", "emodb", "emodb+ravdess"])
def test_folds_are_speaker_independent_and_cover_everything(data_root, corpus_name):
    corpus = load_corpus(DataConfig(root=str(data_root), corpus=corpus_name))
    seen = set()
    for fold in make_folds(corpus):
        train, test = fold.split(corpus)
        assert not {u.speaker for u in train.utterances} & {u.speaker for u in test.utterances}
        assert len(train.utterances) + len(test.utterances) == len(corpus.utterances)
        seen |= fold.test_ids
    assert seen == {u.id for u in corpus.utterances}


def test_speaker_dependent_split_says_so(data_root):
    cfg = DataConfig(root=str(data_root), corpus="emodb", speaker_dependent=True)
    folds = make_folds(load_corpus(cfg), cfg)
    assert len(folds) == 5 and not any(f.speaker_independent for f in folds)
    assert all("SPEAKER-DEPENDENT" in f.name for f in folds)


def _manifest(tmp_path: Path, rows: list[str], header: str = "path,label,speaker,split") -> Path:
    for i, row in enumerate(rows):
        write_audio(tmp_path / row.split(",")[0], 0.5, seed=i)
    path = tmp_path / "manifest.csv"
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def test_manifest_with_split(tmp_path):
    path = _manifest(tmp_path, ["a/1.wav,happy,s1,train", "a/2.wav,sad,s1,train", "b/3.wav,happy,s2,test",
                                "b/4.wav,sad,s2,test"])
    corpus = load_corpus(DataConfig(corpus=str(path)))
    assert corpus.labels == ["happy", "sad"] and corpus.utterances[2].path == (tmp_path / "b/3.wav").resolve()
    [fold] = make_folds(corpus)
    assert fold.speaker_independent and len(fold.test_ids) == 2
    leaky = _manifest(tmp_path, ["a/1.wav,happy,s1,train", "b/3.wav,sad,s1,test"])
    assert not make_folds(read_manifest(leaky))[0].speaker_independent


def test_manifest_errors(tmp_path):
    with pytest.raises(CorpusError, match="missing speaker"):
        read_manifest(_manifest(tmp_path, ["x.wav,happy"], header="path,label"))
    bad_row = _manifest(tmp_path, ["x.wav,,s1,train"])
    with pytest.raises(CorpusError, match="line 2: empty path, label or speaker"):
        read_manifest(bad_row)
    outside = tmp_path / "sub" / "m.csv"
    outside.parent.mkdir()
    outside.write_text("path,label,speaker\n../x.wav,happy,s1\n")
    with pytest.raises(CorpusError, match="points outside"):
        read_manifest(outside)
    assert read_manifest(outside, allow_outside_root=True).utterances[0].path == (tmp_path / "x.wav").resolve()
    with pytest.raises(CorpusError, match="no such manifest"):
        load_corpus(DataConfig(corpus=str(tmp_path / "nope.csv")))


def test_class_map_with_unknown_label_is_named(tmp_path):
    path = _manifest(tmp_path, ["a.wav,happy,s1,", "b.wav,sad,s2,"])
    with pytest.raises(CorpusError, match="angry"):
        load_corpus(DataConfig(corpus=str(path), classes="happy,angry"))
    merged = load_corpus(DataConfig(corpus=str(path), classes="happy=positive,sad=negative"))
    assert merged.labels == ["positive", "negative"]


def test_label_folders(tmp_path):
    for i, (label, name) in enumerate([("angry", "spk1_a.wav"), ("angry", "spk2-b.flac"), ("calm", "spk1_c.wav")]):
        write_audio(tmp_path / "corpus" / label / name, 0.5, seed=i)
    corpus = load_corpus(DataConfig(corpus=str(tmp_path / "corpus"), num_folds=2))
    assert corpus.labels == ["angry", "calm"] and corpus.speakers == ["spk1", "spk2"]
    assert len(make_folds(corpus, DataConfig(num_folds=2))) == 2


def test_unknown_corpus_and_missing_folder(tmp_path):
    with pytest.raises(CorpusError, match="unknown corpus 'nosuch'"):
        load_corpus(DataConfig(corpus="nosuch"))
    with pytest.raises(CorpusError, match="no RAVDESS folder"):
        load_corpus(DataConfig(root=str(tmp_path), corpus="ravdess"))


def test_bad_ravdess_name(tmp_path):
    write_audio(tmp_path / "ravdess" / "Actor_01" / "hello.wav", 0.5)
    with pytest.raises(CorpusError, match="hello.wav: not a RAVDESS file name"):
        load_corpus(DataConfig(root=str(tmp_path), corpus="ravdess"))


def test_one_record_per_corpus_says_where_it_lives_how_it_is_read_and_on_what_terms(data_root):
    from sera.data import CORPORA, load_corpus, make_folds
    from sera.data.download import SOURCES

    assert set(CORPORA) == {"ravdess", "emodb", "iemocap", "crema-d"}
    assert all(r.licence and r.citation and r.folder for r in CORPORA.values())
    assert SOURCES == {n: r.source for n, r in CORPORA.items() if r.source}  # sera download reads the same record
    for name in ("ravdess", "emodb"):  # its folds: consecutive groups of its sorted speakers
        corpus = load_corpus(DataConfig(root=str(data_root), corpus=name))
        assert len(make_folds(corpus)) == CORPORA[name].folds
