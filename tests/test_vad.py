"""Voice activity (sera.vad): Silero's model ported to a small torch module read from the wheel's safetensors."""

import numpy as np
import pytest
import torch

from sera.audio import load_audio
from sera.vad import SileroVAD, speech_probabilities, speech_regions

SR = 16_000


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SR), dtype=np.float32)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
def test_the_port_computes_what_silero_computes_with_the_same_weights(data_root):
    """Silero's own TorchScript model (loaded here only, as the reference) and sera's module, given
    the reference's weights, agree chunk by chunk on a real clip: the architecture is right."""
    silero_vad = pytest.importorskip("silero_vad")
    threads = torch.get_num_threads()
    try:
        ref = silero_vad.load_silero_vad()  # sets torch's thread count on import: restored below
    finally:
        torch.set_num_threads(threads)
    sd = {k.removeprefix("_model."): v for k, v in ref.state_dict().items() if k.startswith("_model.")}
    state = {"stft_conv.weight": sd["stft.forward_basis_buffer"],
             "final_conv.weight": sd["decoder.decoder.2.weight"], "final_conv.bias": sd["decoder.decoder.2.bias"]}
    state |= {f"conv{i + 1}.{w}": sd[f"encoder.{i}.reparam_conv.{w}"] for i in range(4) for w in ("weight", "bias")}
    state |= {f"lstm.{w}_l0": sd[f"decoder.rnn.{w}"] for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    ours = SileroVAD()
    ours.load_state_dict(state)
    wave = load_audio(data_root / "ravdess/Actor_01/03-01-05-02-01-01-01.flac")
    n = -(-len(wave) // 512)
    x = torch.nn.functional.pad(torch.as_tensor(wave), (0, n * 512 - len(wave)))
    with torch.no_grad():
        expected = torch.stack([ref(x[i * 512 : (i + 1) * 512][None], SR)[0, 0] for i in range(n)])
        chunks = torch.nn.functional.pad(x, (64, 0)).unfold(0, 576, 512)
        got = ours.eval()(chunks)
    assert got.shape == (n,) and torch.allclose(got, expected, atol=1e-4)


def test_no_speech_in_silence_noise_or_tones():
    rng = np.random.default_rng(0)
    t = np.arange(3 * SR) / SR
    for wave in (silence(3), 0.01 * rng.standard_normal(3 * SR), 0.3 * np.sin(2 * np.pi * 220 * t),
                 np.concatenate([silence(0.5), 0.3 * np.sin(2 * np.pi * 440 * t[:SR]), silence(0.5)])):
        assert speech_regions(wave.astype(np.float32)) == []
    assert len(speech_probabilities(silence(1.0))) == 32  # one per 32 ms chunk, the last one padded
    assert len(speech_probabilities(silence(0))) == 0


def test_speech_is_found_where_the_clips_were_placed(data_root):
    """Three corpus clips between seconds of silence: one region (at least) inside each clip's
    placement, none in the silences between them, and the speech itself is covered."""
    paths = ["ravdess/Actor_01/03-01-05-02-01-01-01.flac", "ravdess/Actor_02/03-01-03-01-02-01-02.flac",
             "emodb/wav/03a01Fa.flac"]
    parts, spans, t = [silence(1.5)], [], 1.5
    for p in paths:
        clip = load_audio(data_root / p)
        spans.append((t, t + len(clip) / SR))
        t += len(clip) / SR + 2.0
        parts += [clip, silence(2.0)]
    regions = speech_regions(np.concatenate(parts))
    assert regions, "no speech found in three corpus clips"
    for r in regions:  # nothing outside the clips (the padding may reach 30 ms past a clip's edge)
        assert any(a - 0.05 <= r.start and r.end <= b + 0.05 for a, b in spans), (r, spans)
    for a, b in spans:  # and each clip has speech: RAVDESS sentences last about 1.5 s of their 3-4 s
        inside = sum(r.duration for r in regions if a - 0.05 <= r.start and r.end <= b + 0.05)
        assert inside >= 0.8, (a, b, regions)


def test_thresholds_shape_the_regions(data_root):
    wave = load_audio(data_root / "ravdess/Actor_01/03-01-05-02-01-01-01.flac")
    default = speech_regions(wave)
    strict = speech_regions(wave, threshold=0.9)
    assert sum(r.duration for r in strict) <= sum(r.duration for r in default)
    assert speech_regions(wave, min_speech=10.0) == []  # no region lasts 10 s
    padded = speech_regions(wave, pad=0.2)
    assert padded[0].start <= default[0].start - 0.1 or padded[0].start == 0.0
