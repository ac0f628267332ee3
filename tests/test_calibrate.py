"""Knowing when it does not know: calibration measures, the temperature, and the domain check that flags
audio unlike the training clips (sera/calibrate.py, Predictor's flags)."""

import numpy as np
import pytest

from sera.calibrate import fit_temperature, temper
from sera.metrics import reliability


def test_reliability_of_known_probabilities():
    probs = np.array([[0.8, 0.2]] * 10)  # always 0.8 sure of class 0 ...
    y = np.array([0] * 5 + [1] * 5)  # ... and right half the time: 0.3 overconfident
    r = reliability(y, probs)
    assert r["ece"] == pytest.approx(0.3) and r["count"][7] == 10  # 0.8 falls in the bin (0.7, 0.8]
    assert reliability(np.array([0, 0, 0, 1]), np.array([[0.75, 0.25]] * 4))["ece"] == pytest.approx(0.0)


def test_the_temperature_undoes_overconfidence_it_was_fitted_on():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4000, 4)) * 1.5
    truth = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)  # calibrated by construction
    y = np.array([rng.choice(4, p=p) for p in truth])
    overconfident = temper(truth, 1 / 3)  # logits x 3
    T = fit_temperature(overconfident[:2000], y[:2000])  # fitted on one half ("validation speakers")
    assert T == pytest.approx(3.0, rel=0.1)
    before, after = reliability(y[2000:], overconfident[2000:])["ece"], reliability(y[2000:], temper(overconfident[2000:], T))["ece"]
    assert before > 0.1 and after < 0.03  # scored on the other half
    np.testing.assert_allclose(temper(truth, 1.0), truth, atol=1e-9)  # T = 1 changes nothing
    assert (temper(truth, T).argmax(1) == truth.argmax(1)).all()  # nor any label


@pytest.mark.slow
def test_predict_flags_foreign_sounds_and_not_speakers_it_never_heard(demo_checkpoint, data_root):
    """Tones, a music-like chord, white noise and speech under heavy noise are out of domain for a model trained
    on RAVDESS actors 1-4; clips of actors it never heard, in its emotions, mostly are not."""
    from sera.audio import load_audio
    from sera.config import AudioConfig, VadConfig
    from sera.predict import Predictor

    predictor = Predictor(demo_checkpoint, vad=VadConfig(enabled=False))  # the tones would not pass the VAD
    assert predictor.domain is not None and np.isfinite(predictor.domain.threshold)
    assert predictor.temperature == 0.8  # the checkpoint's, applied to every window (tests/test_onnx.py: both routes)
    sr, rng = 16_000, np.random.default_rng(0)
    t = np.arange(int(3.5 * sr)) / sr
    foreign = {
        "tone": 0.3 * np.sin(2 * np.pi * 440 * t),
        "chord": sum(0.08 * np.sin(2 * np.pi * f * t) * (np.sin(2 * np.pi * 2 * t) > 0) for f in (220, 277, 330, 440)),
        "white noise": 0.1 * rng.standard_normal(t.size),
    }
    unseen = [p for a in ("21", "22", "23", "24") for p in sorted((data_root / "ravdess" / f"Actor_{a}").glob("*.flac"))
              if p.name.split("-")[2] in ("01", "03", "04", "05")][::6]  # neutral, happy, sad, angry
    speech = load_audio(unseen[0], AudioConfig())
    noise = rng.standard_normal(speech.size)
    foreign["speech at -10 dB SNR"] = speech + noise * np.sqrt((speech ** 2).mean() / (noise ** 2).mean()) * 10 ** 0.5
    for name, wave in foreign.items():
        pred = predictor.predict_wave(wave.astype(np.float32), sr, name)
        assert "out of domain" in pred.flags, (name, pred.domain_distance, predictor.domain.threshold)
        assert pred.warning().startswith("The audio is unlike the training clips")
    distances = [predictor.predict_file(p).domain_distance for p in unseen]
    flagged = np.mean([d > predictor.domain.threshold for d in distances])
    assert len(unseen) >= 8 and flagged <= 0.2, (flagged, distances)
    assert max(distances) < min(predictor.predict_wave(w.astype(np.float32), sr).domain_distance
                                for w in foreign.values())
