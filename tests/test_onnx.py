"""`sera export --onnx` and `sera predict --onnx`: the exported graph gives the PyTorch path's probabilities,
and its runtime imports neither torch nor transformers."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn

from conftest import tone
from sera.audio import load_audio
from sera.checkpoint import save_checkpoint
from sera.cli import main
from sera.config import EncoderConfig, SeraConfig, VadConfig
from sera.encoders import encoder_identity
from sera.errors import SeraError
from sera.export import export_onnx, whisper_input
from sera.model import EmotionClassifier
from sera.onnx_predict import OnnxPredictor, log_mel
from sera.predict import Predictor


@pytest.fixture(scope="module")
def exported(demo_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "model"
    assert main(["export", str(demo_checkpoint), "--onnx", str(out)]) == 0
    return out


def _clips(data_root):
    ravdess = load_audio(data_root / "ravdess" / "Actor_21" / "03-01-05-02-01-01-21.flac")
    emodb = load_audio(data_root / "emodb" / "wav" / "03a01Fa.flac")
    return {"1 s": ravdess[:16_000], "RAVDESS clip": ravdess, "EmoDB clip": emodb,
            "24 s (two windows)": np.concatenate([ravdess, emodb] * 5)[: 24 * 16_000]}


def test_onnx_gives_the_pytorch_probabilities_and_flags(exported, demo_checkpoint, data_root):
    # the ONNX route scores fixed windows, as the PyTorch one does with its VAD off
    torch_path = Predictor(demo_checkpoint, device="cpu", vad=VadConfig(enabled=False))
    onnx_path = OnnxPredictor(exported)
    assert onnx_path.labels == torch_path.labels
    clips = {**_clips(data_root), "a tone": tone(3.0).astype(np.float32)}
    flagged = set()
    for name, wave in clips.items():
        expected = torch_path.predict_wave(wave)
        got = onnx_path.predict_wave(wave)
        np.testing.assert_allclose(got.window_probabilities, expected.window_probabilities, atol=1e-3, err_msg=name)
        np.testing.assert_allclose(got.windows, expected.windows, err_msg=name)
        assert [onnx_path.labels[i] for i in np.argsort(-got.probabilities)][0] == expected.label, name
        assert got.domain_distance == pytest.approx(expected.domain_distance, rel=1e-3), name
        assert got.flags == expected.flags and got.warning() == expected.warning(), name
        flagged |= {(name, f) for f in got.flags}
    assert ("a tone", "out of domain") in flagged and ("EmoDB clip", "out of domain") in flagged  # RAVDESS actors 1-4


def test_numpy_log_mel_matches_whisper_feature_extractor(exported, demo_checkpoint, data_root):
    predictor = Predictor(demo_checkpoint, device="cpu")
    filters = np.load(exported / "mel_filters.npy")
    for wave in _clips(data_root).values():
        wave = wave[: 10 * 16_000]
        np.testing.assert_allclose(log_mel(wave, filters)[None], whisper_input(predictor, wave), atol=1e-4)


def test_sera_predict_onnx_imports_neither_torch_nor_transformers(exported, data_root, tmp_path):
    clip = data_root / "ravdess" / "Actor_21" / "03-01-05-02-01-01-21.flac"
    code = ("import json, sys; from sera.cli import main; rc = main(['predict', '--onnx', sys.argv[1], sys.argv[2], "
            "'--json', '--top-k', '4']); print(json.dumps({'rc': rc, 'heavy': [m for m in ('torch', 'transformers') if m in sys.modules]}))")
    run = subprocess.run([sys.executable, "-c", code, str(exported), str(clip)], capture_output=True, text=True,
                         timeout=120)
    *predictions, status = run.stdout.strip().splitlines()
    assert json.loads(status) == {"rc": 0, "heavy": []}, run.stderr[-2000:]
    [item] = json.loads("\n".join(predictions))
    assert item["file"] == str(clip) and abs(sum(item["top"].values()) - 1) < 1e-4  # all 4 classes
    with pytest.raises(SeraError, match="not a sera ONNX export"):
        OnnxPredictor(tmp_path)


@pytest.mark.parametrize("normalise", ["none", "utterance"])
def test_a_wav2vec_family_checkpoint_exports_from_the_wave(tiny_hubert, tmp_path, normalise):
    """HuBERT / wav2vec 2.0 / WavLM take the wave itself: the graph starts there, any length; an utterance-
    normalised checkpoint's graph standardises each window with its own statistics, as ``Predictor`` does."""
    cfg = SeraConfig()
    cfg.encoder.name, cfg.data.normalise, cfg.vad.enabled = str(tiny_hubert), normalise, False  # tones: no speech
    cfg.model.width, cfg.model.heads, cfg.model.probe_weight, cfg.model.residual_probe = 32, 4, 0.5, True
    key, _ = encoder_identity(EncoderConfig(name=str(tiny_hubert)))
    model = EmotionClassifier(cfg.model, 3, 32, 2)
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(3, 5 + i, 32, generator=g) for i in range(8)]
    model.probe.fit(feats, np.arange(8) % 2)  # both probes in the graph: the one averaged in, the one corrected
    model.prior.fit_prior(feats, np.arange(8) % 2, [f"s{i // 2}" for i in range(8)])
    nn.init.normal_(model.head[-1].weight, generator=g)  # a head that adds something to the corrected probe
    ckpt = save_checkpoint(tmp_path / "ckpt", model, cfg, ["a", "b"], key, 3, 32)
    torch_path, onnx_path = Predictor(ckpt, device="cpu"), OnnxPredictor(export_onnx(ckpt, tmp_path / "onnx"))
    assert not (tmp_path / "onnx" / "mel_filters.npy").exists()  # no log-mel front end for this family
    for seconds in (1.0, 3.3, 24.0):  # the last in two windows
        wave = tone(seconds, seed=1)
        expected = torch_path.predict_wave(wave)
        got = onnx_path.predict_wave(wave)
        np.testing.assert_allclose(got.window_probabilities, expected.window_probabilities, atol=1e-3, err_msg=str(seconds))
        np.testing.assert_allclose(got.windows, expected.windows)
