"""Shared fixtures: the real data in ../shared, tiny generated audio, tiny random encoders."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

# Under pytest-xdist (`make test` runs two workers) each worker and its subprocesses take one core.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 0)) or min(2, os.cpu_count() or 1))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the hub is unreachable here; fail at once, not after retries

pytest_plugins = ["strict_ci"]  # CI=true turns a skip into a failure

_SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATA = Path(os.environ.get("SERA_DATA") or _SHARED / "data")
WHISPER = Path(os.environ.get("SERA_WHISPER") or _SHARED / "models" / "whisper-tiny.en")


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA / "ravdess").is_dir():
        pytest.skip(f"real corpora not found at {DATA} (set SERA_DATA)")
    return DATA


@pytest.fixture(scope="session")
def whisper_path() -> Path:
    if not (WHISPER / "config.json").is_file():
        pytest.skip(f"whisper-tiny.en not found at {WHISPER} (set SERA_WHISPER)")
    return WHISPER


def tone(seconds: float, sr: int = 16_000, freq: float = 220.0, amp: float = 0.3, seed: int = 0) -> np.ndarray:
    """A voiced-ish test signal: a tone with a little noise, so no two files are identical."""
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(seed)
    return (amp * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def write_audio(path: Path, seconds: float = 1.0, sr: int = 16_000, seed: int = 0, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(seconds, sr, seed=seed, **kw), sr)
    return path


def manifest_rows(root: Path, n: int, speakers: int = 3, seconds=lambda i: 0.6) -> list[str]:
    """``n`` short clips under ``root`` (``s<speaker>_<i>.wav``, sad and happy in turn) and their manifest rows."""
    rows = []
    for i in range(n):
        write_audio(root / f"s{i % speakers}_{i}.wav", seconds(i), seed=i)
        rows.append(f"s{i % speakers}_{i}.wav,{'happy' if i % 2 else 'sad'},s{i % speakers}")
    return rows


def write_manifest(root: Path, rows: list[str]) -> Path:
    (root / "m.csv").write_text("path,label,speaker\n" + "\n".join(rows) + "\n")
    return root / "m.csv"


def save_random_encoder(kind: str, folder: Path, **overrides) -> Path:
    """A tiny randomly initialised transformers speech model, saved and loadable by path."""
    from transformers import (Data2VecAudioConfig, Data2VecAudioModel, HubertConfig, HubertModel,
                              Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model, WavLMConfig, WavLMModel)

    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                 conv_dim=(16, 16, 16, 16, 16, 16, 16), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    small.update(overrides)
    config_cls, model_cls = {
        "hubert": (HubertConfig, HubertModel), "wav2vec2": (Wav2Vec2Config, Wav2Vec2Model),
        "wavlm": (WavLMConfig, WavLMModel), "data2vec-audio": (Data2VecAudioConfig, Data2VecAudioModel),
    }[kind]
    torch.manual_seed(0)
    model = model_cls(config_cls(**small)).eval()
    model.save_pretrained(folder)
    layer_norm = model.config.feat_extract_norm == "layer"
    Wav2Vec2FeatureExtractor(do_normalize=layer_norm, return_attention_mask=layer_norm).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_hubert(tmp_path_factory) -> Path:
    return save_random_encoder("hubert", tmp_path_factory.mktemp("hubert"), feat_extract_norm="layer", do_stable_layer_norm=True)


def _shared_dir(tmp_path_factory, name: str) -> Path:
    """A folder every xdist worker of this run shares (the workers' temp folders sit side by side)."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    (root / name).mkdir(exist_ok=True)
    return root / name


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory) -> Path:
    """One feature cache for the tests that extract real corpus clips: each clip is encoded once, even
    across workers (the cache writes atomically, so two workers encoding one clip is harmless)."""
    return _shared_dir(tmp_path_factory, "feature-cache")


@pytest.fixture(scope="session")
def demo_checkpoint(tmp_path_factory, data_root, whisper_path, feature_cache) -> Path:
    """A small real checkpoint (RAVDESS, 4 emotions, actors 1-4, a few epochs) for predict and the app,
    built once per run by whichever worker asks first."""
    from filelock import FileLock

    path = _shared_dir(tmp_path_factory, "demo") / "checkpoint"
    with FileLock(str(path) + ".lock"):
        if not (path / "config.json").is_file():
            _train_demo_checkpoint(path, data_root, whisper_path, feature_cache)
    return path


def _train_demo_checkpoint(path: Path, data_root: Path, whisper_path: Path, feature_cache: Path) -> None:
    from sera.checkpoint import save_checkpoint
    from sera.config import DataConfig, SeraConfig
    from sera.data import load_corpus
    from sera.normalise import normalise
    from sera.pipeline import features
    from sera.recipe import domain_check
    from sera.train import final_attributes, finetune

    cfg = SeraConfig(data=DataConfig(root=str(data_root), corpus="ravdess", classes="angry,happy,neutral,sad"))
    cfg.encoder.name, cfg.cache_dir = str(whisper_path), str(feature_cache)
    cfg.train.finetune_epochs = 3
    corpus = load_corpus(cfg.data)
    corpus = corpus.subset(u for u in corpus.utterances if int(u.speaker) <= 4)
    raw, key = features(corpus, cfg, progress=False)
    fs = normalise(raw, cfg.data.normalise)  # per speaker, as `sera train` trains its final model
    L, _, D = fs.feats[0].shape
    model, _ = finetune(fs, None, cfg, L, D, len(corpus.labels), progress=False)
    save_checkpoint(path, model, cfg, corpus.labels, key, L, D, {"trained_on": "ravdess (test)", "temperature": 0.8},
                    fs.reference, final_attributes(model, fs, cfg), domain_check(raw, cfg))
