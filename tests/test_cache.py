"""Feature cache: keyed by encoder and content, atomic, verified, resumable, tolerant of broken files."""

from pathlib import Path

import pytest
import torch

from conftest import manifest_rows, write_audio, write_manifest
from sera.cache import FeatureCache, extract, file_digest, load_features
from sera.config import DataConfig, EncoderConfig
from sera.data import load_corpus
from sera.encoders import Encoder
from sera.errors import CacheError


@pytest.fixture(scope="module")
def encoder(tiny_hubert):
    return Encoder(EncoderConfig(name=str(tiny_hubert)))


def _corpus(root: Path, n: int = 6, broken: bool = False):
    rows = manifest_rows(root, n, seconds=lambda i: 0.5 + 0.1 * i)
    if broken:
        (root / "empty.wav").write_bytes(b"")
        (root / "junk.wav").write_bytes(b"not audio" * 50)
        rows += ["empty.wav,happy,s9", "junk.wav,sad,s9"]
    return load_corpus(DataConfig(corpus=str(write_manifest(root, rows))))


def test_extract_then_resume(tmp_path, encoder):
    corpus = _corpus(tmp_path / "data")
    cache = FeatureCache(tmp_path / "cache", encoder.key)
    report = extract(corpus.utterances, encoder, cache, progress=False)
    assert (report.extracted, report.cached, report.failed) == (6, 0, [])
    assert report.audio_seconds == pytest.approx(sum(0.5 + 0.1 * i for i in range(6)), abs=1e-3)
    assert (cache.encoder_dir / "encoder.json").is_file()
    kept, feats, skipped = load_features(corpus.utterances, cache)
    assert len(kept) == 6 and not skipped
    for u, f in zip(kept, feats):
        assert f.dtype == torch.float16 and f.shape[0] == encoder.num_layers and f.shape[2] == encoder.dim
        from sera.audio import load_audio

        torch.testing.assert_close(f.float(), encoder([load_audio(u.path)])[0], atol=2e-2, rtol=1e-2)
    again = extract(corpus.utterances, encoder, cache, progress=False)
    assert (again.extracted, again.cached) == (0, 6)
    assert not list(cache.dir.rglob("*.tmp"))


def test_changed_file_or_other_encoder_never_gets_stale_features(tmp_path, encoder, tmp_path_factory):
    corpus = _corpus(tmp_path / "data", n=3)
    cache = FeatureCache(tmp_path / "cache", encoder.key)
    extract(corpus.utterances, encoder, cache, progress=False)
    before = file_digest(corpus.utterances[0].path)
    write_audio(corpus.utterances[0].path, 0.9, seed=99)  # same name, new content
    assert file_digest(corpus.utterances[0].path) != before
    with pytest.raises(CacheError, match="run `sera extract` first"):
        load_features(corpus.utterances, cache)
    report = extract(corpus.utterances, encoder, cache, progress=False)
    assert (report.extracted, report.cached) == (1, 2)
    other = FeatureCache(tmp_path / "cache", "another-encoder-123")
    assert other.dir != cache.dir and other.get(before) is None


def test_broken_files_are_reported_and_the_rest_extracted(tmp_path, encoder):
    corpus = _corpus(tmp_path / "data", n=4, broken=True)
    cache = FeatureCache(tmp_path / "cache", encoder.key)
    report = extract(corpus.utterances, encoder, cache, progress=False)
    assert report.extracted == 4
    problems = dict((Path(p).name, why) for p, why in report.failed)
    assert problems.keys() == {"empty.wav", "junk.wav"}
    assert "empty file" in problems["empty.wav"] and "not a readable audio file" in problems["junk.wav"]
    assert "junk.wav" in report.summary()
    kept, _, skipped = load_features(corpus.utterances, cache)
    assert len(kept) == 4 and {Path(p).name for p, _ in skipped} == {"empty.wav", "junk.wav"}


def test_corrupted_or_truncated_entry_is_detected_and_reextracted(tmp_path, encoder):
    corpus = _corpus(tmp_path / "data", n=2)
    cache = FeatureCache(tmp_path / "cache", encoder.key)
    extract(corpus.utterances, encoder, cache, progress=False)
    d0, d1 = (file_digest(u.path) for u in corpus.utterances)
    p0, p1 = cache._path(d0), cache._path(d1)
    p0.write_bytes(p0.read_bytes()[:-100])  # truncated
    data = bytearray(p1.read_bytes())
    data[-10] ^= 0xFF  # one flipped byte in the tensor data
    p1.write_bytes(bytes(data))
    assert cache.get(d0) is None and cache.get(d1) is None
    report = extract(corpus.utterances, encoder, cache, progress=False)
    assert report.extracted == 2 and cache.get(d0) is not None and cache.get(d1) is not None


class _Dies:
    """An encoder that fails after a number of batches, like a killed run."""

    def __init__(self, inner, after: int):
        self.inner, self.after, self.identity = inner, after, inner.identity

    def __call__(self, waves):
        if self.after == 0:
            raise KeyboardInterrupt
        self.after -= 1
        return self.inner(waves)


def test_interrupted_extraction_resumes_without_half_written_files(tmp_path, encoder):
    corpus = _corpus(tmp_path / "data", n=6)
    cache = FeatureCache(tmp_path / "cache", encoder.key)
    with pytest.raises(KeyboardInterrupt):
        extract(corpus.utterances, _Dies(encoder, after=2), cache, clips_per_batch=2, progress=False)
    done = [f for f in cache.dir.rglob("*.safetensors")]
    assert len(done) == 4 and not list(cache.dir.rglob("*.tmp"))
    assert all(cache.get(p.stem) is not None for p in done)
    report = extract(corpus.utterances, encoder, cache, progress=False)
    assert (report.extracted, report.cached) == (2, 4)


def test_real_whisper_features_for_real_clips(tmp_path, data_root, whisper_path):
    corpus = load_corpus(DataConfig(root=str(data_root), corpus="emodb"))
    utts = corpus.utterances[:3]
    enc = Encoder(EncoderConfig(name=str(whisper_path)))
    cache = FeatureCache(tmp_path, enc.key)
    report = extract(utts, enc, cache, progress=False)
    assert report.extracted == 3 and report.encoder_seconds <= report.wall_seconds
    _, feats, _ = load_features(utts, cache)
    for u, f in zip(utts, feats):
        assert f.shape[:1] == (5,) and f.shape[2] == 384 and abs(f.shape[1] - u.duration * 50) <= 2


def test_cache_stores_frames_reduced_as_training_reads_them(tmp_path, encoder):
    """Stride 4 keeps a quarter of the frames, averaged in float32 before the float16 cast; another
    stride is another cache (part of the entry's identity), never a silently wrong frame rate."""
    from sera.audio import load_audio
    from sera.encoders import reduce_frames

    corpus = _corpus(tmp_path / "data", n=3)
    full = FeatureCache(tmp_path / "cache", encoder.key)
    quarter = FeatureCache(tmp_path / "cache", encoder.key, stride=4)
    extract(corpus.utterances, encoder, full, progress=False)
    extract(corpus.utterances, encoder, quarter, progress=False)
    assert quarter.dir != full.dir and quarter.size_bytes() < 0.3 * full.size_bytes()
    for u in corpus.utterances:
        digest = file_digest(u.path)
        whole, reduced = full.get(digest), quarter.get(digest)
        assert reduced.shape == (whole.shape[0], whole.shape[1] // 4, whole.shape[2])
        expected = reduce_frames(encoder([load_audio(u.path)])[0], 4).half()
        torch.testing.assert_close(reduced, expected, atol=1e-3, rtol=1e-3)
    moved = quarter._path(file_digest(corpus.utterances[0].path))  # an entry of stride 4 put where stride 1 reads
    target = full._path(moved.stem)
    target.write_bytes(moved.read_bytes())
    assert full.get(moved.stem) is None
