"""Augmented copies: what each does to a signal, a fixed draw per clip, and copies as their own cache entries."""

import numpy as np
import pytest

from conftest import manifest_rows, tone, write_audio, write_manifest
from sera.augment import AUGMENTATIONS, Augmentation, parse_augmentations
from sera.cache import FeatureCache, extract, load_features
from sera.config import DataConfig, EncoderConfig
from sera.data import load_corpus
from sera.encoders import Encoder
from sera.errors import SeraError

SR = 16_000


def _spectrum_peak(wave: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / SR)[spec.argmax()])


def _band_energy(wave: np.ndarray, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(wave)) ** 2
    f = np.fft.rfftfreq(len(wave), 1 / SR)
    return float(spec[(f >= lo) & (f < hi)].sum() / spec.sum())


@pytest.mark.parametrize("name", list(AUGMENTATIONS))
def test_each_copy_is_a_valid_clip_drawn_once_per_clip(name):
    wave = tone(1.0, freq=440.0, amp=0.3, seed=1)
    aug = AUGMENTATIONS[name]
    out = aug(wave, "clip-a")
    assert out.dtype == np.float32 and out.ndim == 1 and np.isfinite(out).all() and np.abs(out).max() <= 0.99
    np.testing.assert_array_equal(out, aug(wave, "clip-a"))  # the same clip, the same copy
    assert not np.allclose(out[: len(wave)], wave[: len(out)], atol=1e-3)  # it changed the signal
    state = np.random.get_state()[1].copy()
    aug(wave, "clip-b")
    np.testing.assert_array_equal(state, np.random.get_state()[1])  # global random state left as it was


def test_speed_moves_length_and_pitch_together():
    wave = tone(2.0, freq=400.0, amp=0.3, seed=0)
    slow, fast = AUGMENTATIONS["speed0.9"](wave), AUGMENTATIONS["speed1.1"](wave)
    assert len(slow) == pytest.approx(len(wave) / 0.9, abs=2) and len(fast) == pytest.approx(len(wave) / 1.1, abs=2)
    assert _spectrum_peak(slow) == pytest.approx(360, abs=5) and _spectrum_peak(fast) == pytest.approx(440, abs=5)


def test_pitch_keeps_length_and_moves_pitch_within_two_semitones():
    wave = tone(2.0, freq=400.0, amp=0.3, seed=0)
    shifts = [12 * np.log2(_spectrum_peak(AUGMENTATIONS["pitch"](wave, str(i))) / 400) for i in range(4)]
    assert all(abs(s) <= 2.1 for s in shifts) and np.ptp(shifts) > 0.3  # a different draw per clip


def test_noise_lands_at_its_snr():
    wave = tone(2.0, freq=300.0, amp=0.3, seed=0)
    for i in range(3):
        out = AUGMENTATIONS["noise"](wave, str(i))
        snr = 10 * np.log10(np.mean(wave**2) / np.mean((out - wave) ** 2))
        assert 4.5 <= snr <= 20.5


def test_telephone_removes_what_a_phone_line_cannot_carry():
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(SR)).astype(np.float32)  # white: every band equal
    out = AUGMENTATIONS["telephone"](wave)
    assert len(out) == len(wave)
    assert _band_energy(out, 4000, 8000) < 0.01 and _band_energy(wave, 4000, 8000) > 0.4


def test_room_adds_a_reverberant_tail():
    wave = np.zeros(SR, dtype=np.float32)
    wave[:800] = tone(0.05, freq=1000.0, amp=0.5)  # a 50 ms burst, then silence
    out = AUGMENTATIONS["room"](wave, "x")
    assert len(out) == len(wave)
    tail = np.sqrt(np.mean(out[1600:2400] ** 2)) / np.sqrt(np.mean(out[:800] ** 2))
    assert tail > 0.005  # 50-100 ms after the burst ended: the room's echo; the dry clip has none there


def test_mp3_at_a_low_bitrate_drops_the_top_of_the_spectrum():
    wave = (0.1 * np.random.default_rng(0).standard_normal(2 * SR)).astype(np.float32)
    for i in range(3):
        out = AUGMENTATIONS["mp3"](wave, str(i))
        assert len(out) == len(wave)  # the encoder's delay is taken back out
        assert _band_energy(out, 5000, 8000) < 0.9 * _band_energy(wave, 5000, 8000)


def test_gain_moves_the_level_within_its_range():
    wave = tone(1.0, amp=0.05)  # quiet enough that no gain in range reaches full scale
    gains = [20 * np.log10(np.std(AUGMENTATIONS["gain"](wave, str(i))) / np.std(wave)) for i in range(6)]
    assert all(-18.01 <= g <= 6.01 for g in gains) and max(gains) - min(gains) > 3  # a level drawn per clip


def test_channel_draws_a_different_device_per_clip():
    wave = (0.1 * np.random.default_rng(0).standard_normal(2 * SR)).astype(np.float32)
    outs = [AUGMENTATIONS["channel"](wave, str(i)) for i in range(3)]
    assert all(len(o) == len(wave) for o in outs)
    assert all(_band_energy(o, 7500, 8000) < 0.2 * _band_energy(wave, 7500, 8000) for o in outs)  # a low-pass, always
    lows = [_band_energy(o, 0, 300) for o in outs]  # high-pass corners (and equalisers) drawn per clip
    assert max(lows) > 1.5 * min(lows)


def test_names_are_checked_and_identity_follows_parameters():
    assert [a.name for a in parse_augmentations(" speed0.9, room ")] == ["speed0.9", "room"]
    assert parse_augmentations("") == []
    with pytest.raises(SeraError, match="unknown augmentation.*warp.*known: speed0.9"):
        parse_augmentations("speed0.9,warp")
    a, b = Augmentation("s", "speed", {"factor": 0.9}), Augmentation("s", "speed", {"factor": 0.95})
    assert a.key != b.key and a.key == Augmentation("s", "speed", {"factor": 0.9}).key


def _manifest(root, n: int, speakers: int) -> str:
    return str(write_manifest(root, manifest_rows(root, n, speakers)))


def test_copies_are_cache_entries_of_their_own(tmp_path, tiny_hubert):
    corpus = load_corpus(DataConfig(corpus=_manifest(tmp_path / "data", 3, 3)))
    encoder = Encoder(EncoderConfig(name=str(tiny_hubert)))
    plain = FeatureCache(tmp_path / "cache", encoder.key)
    slow = FeatureCache(tmp_path / "cache", encoder.key, augment=AUGMENTATIONS["speed0.9"])
    assert plain.dir != slow.dir and "aug-speed0.9" in slow.dir.name
    for cache in (plain, slow):
        assert extract(corpus.utterances, encoder, cache, progress=False).extracted == 3
    assert extract(corpus.utterances, encoder, slow, progress=False).cached == 3  # resumes like any cache
    _, clean, _ = load_features(corpus.utterances, plain)
    _, copies, _ = load_features(corpus.utterances, slow)
    for c, s in zip(clean, copies):
        assert s.shape[0] == c.shape[0] and s.shape[1] > c.shape[1]  # the slowed clip is longer
    other = FeatureCache(tmp_path / "cache", encoder.key, augment=AUGMENTATIONS["speed1.1"])
    assert other.get(next(iter(slow.dir.rglob("*.safetensors"))).stem) is None  # never served another copy


def test_stage1_sees_the_copies_of_training_clips_only(monkeypatch):
    """run_fold hands stage 1 the copies of the training folds' clips; a test clip's copy would leak its audio."""
    import sera.evaluate as evaluate
    from sera.data import Fold
    from toy import small_cfg, toy_features

    fs, copies = toy_features(n=16, seed=0), toy_features(n=16, seed=1)  # copies: the same ids, other features
    fold = Fold("speakers s0", frozenset(u.id for u in fs.utts if u.speaker == "s0"))
    seen = {}

    class Stop(Exception):
        pass

    def stage1(train, cfg, progress, saved, unlabelled):
        seen.update(train={u.id for u in train.utts}, copies={u.id for u in unlabelled.utts})
        raise Stop

    monkeypatch.setattr(evaluate, "stage1", stage1)
    with pytest.raises(Stop):
        evaluate.run_fold(fs, fold, small_cfg(), 2, progress=False, unlabelled=copies)
    assert seen["copies"] == seen["train"] and len(seen["train"]) == 12 and not seen["copies"] & fold.test_ids


def test_unlabelled_features_make_the_copies(tmp_path, tiny_hubert):
    from sera.config import SeraConfig
    from sera.pipeline import unlabelled_features

    cfg = SeraConfig()
    cfg.data.corpus, cfg.encoder.name, cfg.cache_dir = _manifest(tmp_path / "data", 4, 2), str(tiny_hubert), str(tmp_path / "c")
    cfg.train.pretrain_augment = "speed1.1,noise"
    corpus = load_corpus(cfg.data)
    with pytest.raises(SeraError, match="need the corpus"):
        unlabelled_features(cfg, False)
    pool = unlabelled_features(cfg, False, corpus)
    assert [u.id for u in pool.utts] == [u.id for u in corpus.utterances] * 2
    assert len(list((tmp_path / "c").rglob("*.safetensors"))) == 8  # each copy cached once, the clips not needed


def test_a_folder_of_unlabelled_audio_joins_stage_1_but_never_the_corpus_own_files(tmp_path, tiny_hubert):
    """train.pretrain_audio (--pretrain-audio DIR): every audio file below the folder, recursively, one speaker
    per subfolder; a folder holding the evaluated corpus's files is refused (the folds' test clips are in it)."""
    from sera.config import SeraConfig
    from sera.data import UNLABELLED, read_unlabelled
    from sera.errors import CorpusError
    from sera.pipeline import unlabelled_features

    cfg = SeraConfig()
    cfg.data.corpus, cfg.encoder.name, cfg.cache_dir = _manifest(tmp_path / "data", 4, 2), str(tiny_hubert), str(tmp_path / "c")
    corpus = load_corpus(cfg.data)
    extra = tmp_path / "podcasts"
    for i, name in enumerate(["a/one.wav", "a/two.flac", "b/deep/three.wav", "top.wav"]):
        write_audio(extra / name, 0.5 + 0.1 * i, seed=10 + i)
    (extra / "a" / "notes.txt").write_text("not audio")
    cfg.train.pretrain_audio = str(extra)
    pool = unlabelled_features(cfg, False, corpus)
    assert sorted(u.id for u in pool.utts) == ["a/one", "a/two", "b/deep/three", "top"]
    assert {u.speaker for u in pool.utts} == {"a", "b/deep", "."} and {u.label for u in read_unlabelled(extra).utterances} == {UNLABELLED}
    cfg.train.pretrain_audio = f"{extra},{tmp_path / 'data'}"
    with pytest.raises(SeraError, match="holds 4 files of the corpus being evaluated"):
        unlabelled_features(cfg, False, corpus)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no audio files"):
        read_unlabelled(tmp_path / "empty")


def test_stage_2_learns_from_the_copies_of_its_training_clips_only(monkeypatch):
    """train.finetune_augment: the labelled copies a fold's stage 2 and probe see are those of its fitting clips,
    with their labels; never a validation or test clip's (their copies keep the clip's id)."""
    from sera import evaluate
    from sera.normalise import normalise
    from toy import small_cfg, toy_features

    fs = toy_features(n=24)
    cfg = small_cfg()
    cfg.train.stage1 = False
    copies = normalise(toy_features(n=24, seed=1), cfg.data.normalise)  # the clips' copies: same ids, other features
    fold = evaluate.Fold("s0", frozenset(u.id for u in fs.utts if u.speaker == "s0"))
    seen = {}

    class Stop(Exception):
        pass

    def finetune(train, val, cfg, *args, **kwargs):
        seen.update(train=[u.id for u in train.utts], labels=train.labels.tolist(), val={u.id for u in val.utts})
        raise Stop

    monkeypatch.setattr(evaluate, "finetune", finetune)
    with pytest.raises(Stop):
        evaluate.run_fold(fs, fold, cfg, 2, progress=False, copies=copies)
    clips = len(seen["train"]) // 2
    assert seen["train"][clips:] == seen["train"][:clips]  # each fitting clip, then its copy
    assert seen["labels"][clips:] == seen["labels"][:clips] == [int(u.label) for u in fs.utts if u.id in seen["train"]]
    assert not set(seen["train"]) & (seen["val"] | fold.test_ids) and seen["val"]


def test_a_mixed_copy_set_gives_each_clip_one_copy_of_the_kind_its_id_picks(tmp_path, tiny_hubert):
    """train.finetune_augment="a|b": one copy of each clip (one extraction, not one per kind), a or b as the clip's
    id picks, the same on every machine; a picked copy is the kind's own cached copy."""
    from sera.augment import parse_copies
    from sera.config import SeraConfig
    from sera.pipeline import features, labelled_copies

    mixed, room = parse_copies(" noise|telephone, room")
    assert (mixed.name, room.name) == ("noise|telephone", "room")
    ids = [f"clip{i}" for i in range(200)]
    picks = [mixed.pick(i).name for i in ids]
    assert picks == [parse_copies("noise|telephone")[0].pick(i).name for i in ids] and 70 < picks.count("noise") < 130
    assert {room.pick(i).name for i in ids} == {"room"}
    with pytest.raises(SeraError, match="unknown augmentation.*warp"):
        parse_copies("noise|warp")
    cfg = SeraConfig()
    cfg.data.corpus, cfg.encoder.name, cfg.cache_dir = _manifest(tmp_path / "data", 8, 2), str(tiny_hubert), str(tmp_path / "c")
    cfg.train.finetune_augment = "speed0.9|speed1.1"
    corpus = load_corpus(cfg.data)
    copies = labelled_copies(cfg, corpus, False)
    assert sorted(u.id for u in copies.utts) == sorted(u.id for u in corpus.utterances)  # each clip once
    assert len(list((tmp_path / "c").rglob("*.safetensors"))) == 8  # one copy extracted per clip
    set_ = parse_copies(cfg.train.finetune_augment)[0]
    assert [u.id for u in copies.utts] == [u.id for a, us in set_.split(corpus.utterances) for u in us]
    clean = {u.id: f for u, f in zip(*(lambda fs: (fs.utts, fs.feats))(features(corpus, cfg, False)[0]))}
    for u, f in zip(copies.utts, copies.feats):  # slowed copies are longer than their clip, sped-up ones shorter
        longer = f.shape[1] > clean[u.id].shape[1]
        assert longer == (set_.pick(u.id).name == "speed0.9"), u.id
