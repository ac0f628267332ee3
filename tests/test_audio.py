from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import tone, write_audio
from sera.audio import load_audio, prepare_audio
from sera.config import AudioConfig
from sera.errors import AudioError, SeraError


def test_real_flac_is_16k_mono_float32(data_root):
    path = next((data_root / "emodb" / "wav").glob("*.flac"))
    wave = load_audio(path)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert len(wave) == sf.info(str(path)).frames  # already 16 kHz: untouched length


def test_resamples_and_downmixes_stereo(tmp_path):
    left = tone(2.0, sr=44_100)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    sf.write(tmp_path / "s.wav", stereo, 44_100)
    wave = load_audio(tmp_path / "s.wav")
    assert abs(len(wave) - 32_000) <= 1
    assert np.abs(wave).max() == pytest.approx(0.155, abs=0.02)  # the average of a 0.3 tone and silence


def test_integer_pcm_is_scaled():
    pcm = (tone(0.5) * 32767).astype(np.int16)
    wave = prepare_audio(pcm, 16_000)
    assert wave.dtype == np.float32
    np.testing.assert_allclose(wave, pcm / 32768.0, rtol=1e-6)


def _garbage(p: Path) -> Path:
    p.write_bytes(b"RIFF this is not audio at all" * 10)
    return p


def _zero_samples(p: Path) -> Path:
    sf.write(p, np.zeros(0, dtype=np.float32), 16_000)
    return p


def _silent(p: Path) -> Path:
    sf.write(p, np.zeros(16_000, dtype=np.float32), 16_000)
    return p


def _nan(p: Path) -> Path:
    w = tone(1.0)
    w[100] = np.nan
    sf.write(p, w, 16_000, subtype="FLOAT")
    return p


@pytest.mark.parametrize(
    "make, problem",
    [
        (lambda p: p, "no such file"),
        (lambda p: (p.write_bytes(b""), p)[1], "empty file"),
        (_garbage, "not a readable audio file"),
        (_zero_samples, "no audio samples"),
        (_silent, "silent"),
        (_nan, "NaN"),
        (lambda p: write_audio(p, seconds=3.0), "over the 2 s limit"),
    ],
)
def test_bad_audio_names_file_and_problem(tmp_path, make, problem):
    path = make(tmp_path / "clip.wav")
    with pytest.raises(AudioError) as e:
        load_audio(path, AudioConfig(max_seconds=2.0))
    assert "clip.wav" in str(e.value) and problem in str(e.value)
    assert isinstance(e.value, SeraError)


def test_huge_file_refused_before_decoding(tmp_path):
    path = write_audio(tmp_path / "big.wav", seconds=2.0)
    with pytest.raises(AudioError, match="over the 0 MB limit"):
        load_audio(path, AudioConfig(max_megabytes=0.01))


def test_bad_shape():
    with pytest.raises(AudioError, match="shape"):
        prepare_audio(np.zeros((2, 2, 2)), 16_000, "x.wav")
