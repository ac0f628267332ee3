"""Checkpoints travel: the encoder is matched by content, a format version guards old files."""

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from conftest import save_random_encoder, write_audio
from sera.checkpoint import load_classifier, read_checkpoint_config, save_checkpoint
from sera.config import EncoderConfig, SeraConfig
from sera.encoders import encoder_identity
from sera.errors import EncoderError, SeraError
from sera.model import EmotionClassifier
from sera.predict import Predictor


def _checkpoint(folder: Path, encoder: Path) -> Path:
    """An untrained classifier for ``encoder``'s features (3 hidden states of 32 dims)."""
    cfg = SeraConfig()
    cfg.encoder.name, cfg.data.normalise = str(encoder), "none"
    cfg.model.width, cfg.model.heads = 32, 4
    cfg.vad.enabled = False  # the test clips are tones, which hold no speech: score them anyway
    key, _ = encoder_identity(EncoderConfig(name=str(encoder)))
    return save_checkpoint(folder, EmotionClassifier(cfg.model, 3, 32, 2), cfg, ["happy", "sad"], key, 3, 32)


@pytest.fixture()
def moved(tmp_path, tiny_hubert):
    """A checkpoint whose encoder folder has since moved (another machine, Colab, a Space)."""
    model = shutil.copytree(tiny_hubert, tmp_path / "was-here")
    ckpt = _checkpoint(tmp_path / "ckpt", model)
    shutil.move(model, tmp_path / "now-here")
    return ckpt, tmp_path / "now-here"


def test_a_moved_encoder_folder_satisfies_its_checkpoint(tmp_path, moved):
    ckpt, model = moved
    with pytest.raises(SeraError, match=r"was-here is not here .* --encoder"):
        Predictor(ckpt)
    clip = write_audio(tmp_path / "clip.wav", 1.0)
    pred = Predictor(ckpt, encoder=str(model)).predict_file(clip)
    assert set(pred.probabilities) == {"happy", "sad"}
    out = subprocess.run([sys.executable, "-m", "sera.cli", "predict", "--checkpoint", str(ckpt), "--encoder",
                          str(model) + "/", "--device", "cpu", "--json", str(clip)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0]["label"] in {"happy", "sad"}


def test_an_encoder_with_one_weight_changed_is_refused(tmp_path, moved):
    ckpt, model = moved
    weights = model / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(EncoderError, match="computes other features: its weights"):
        Predictor(ckpt, encoder=str(model))


def _rewrite(ckpt: Path, change) -> None:
    meta = json.loads((ckpt / "config.json").read_text())
    change(meta)
    (ckpt / "config.json").write_text(json.dumps(meta))


def test_a_format_1_checkpoint_loads_with_the_settings_it_was_trained_with(tmp_path, tiny_hubert):
    """Before content identity: no format field, a path-based key, no model.layer_norm (then always off)."""
    ckpt = _checkpoint(tmp_path / "old", tiny_hubert)

    def to_format_1(meta):
        del meta["format"], meta["model"]["layer_norm"], meta["model"]["probe_weight"], meta["encoder"]["layers"]
        meta["encoder"]["key"] = "hubert0-0123456789ab"

    _rewrite(ckpt, to_format_1)
    key, _ = encoder_identity(EncoderConfig(name=str(tiny_hubert)))
    with pytest.warns(UserWarning, match="format 1"):
        model, meta, *_ = load_classifier(ckpt, key)
    assert model.backbone.wap.normalise is False  # the legacy value, not today's default (True)
    with warnings.catch_warnings(record=True):
        pred = Predictor(ckpt).predict_file(write_audio(tmp_path / "clip.wav", 1.0))
    assert set(pred.probabilities) == {"happy", "sad"}


def test_a_format_2_checkpoint_loads_without_a_probe(tmp_path, tiny_hubert):
    """Format 2 (sera before the probe, commit 665a18d) has no model.probe_weight: it was trained without one."""
    ckpt = _checkpoint(tmp_path / "old", tiny_hubert)
    _rewrite(ckpt, lambda meta: (meta.update(format=2), meta["model"].pop("probe_weight")))
    model, *_ = load_classifier(ckpt)
    assert model.probe is None
    _rewrite(ckpt, lambda meta: meta.update(format=3))
    with pytest.raises(SeraError, match="model setting.s. probe_weight missing"):
        load_classifier(ckpt)


def test_a_missing_setting_or_a_newer_format_is_refused_with_the_reason(tmp_path, tiny_hubert):
    ckpt = _checkpoint(tmp_path / "ckpt", tiny_hubert)
    _rewrite(ckpt, lambda meta: meta["model"].pop("layer_norm"))
    with pytest.raises(SeraError, match="model setting.s. layer_norm missing"):
        load_classifier(ckpt)
    _rewrite(ckpt, lambda meta: meta.update(format=99))
    with pytest.raises(SeraError, match="format 99 is newer"):
        read_checkpoint_config(ckpt)


def test_a_checkpoint_for_a_layer_subset_predicts_with_that_subset(tmp_path):
    big = save_random_encoder("hubert", tmp_path / "enc", num_hidden_layers=4)  # 5 hidden states
    cfg = SeraConfig()
    cfg.encoder.name, cfg.encoder.layers, cfg.data.normalise = str(big), "::2", "none"
    cfg.vad.enabled = False  # a tone holds no speech
    cfg.model.width, cfg.model.heads = 32, 4
    key, _ = encoder_identity(cfg.encoder)
    ckpt = save_checkpoint(tmp_path / "ckpt", EmotionClassifier(cfg.model, 3, 32, 2), cfg, ["a", "b"], key, 3, 32)
    predictor = Predictor(ckpt)
    assert predictor.encoder.layers == [0, 2, 4] and predictor.encoder.key == key
    assert predictor.predict_file(write_audio(tmp_path / "clip.wav", 0.7)).layer_weights.shape == (3,)
