"""Voice activity (sera.vad): Silero's model ported to a small torch module read from the wheel's safetensors."""

import numpy as np
import pytest
import torch

from sera.audio import load_audio
from sera.config import VadConfig
from sera.vad import (Region, SileroVAD, as_array, frame_times, in_speech, speech_probabilities, speech_regions,
                      speech_segments, trim_key, trim_to_speech)

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
        got, _ = ours.eval()(chunks)
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
    strict = speech_regions(wave, VadConfig(threshold=0.9))
    assert sum(r.duration for r in strict) <= sum(r.duration for r in default)
    assert speech_regions(wave, VadConfig(min_speech=10.0)) == []  # no region lasts 10 s
    padded = speech_regions(wave, VadConfig(pad=0.2))
    assert padded[0].start <= default[0].start - 0.1 or padded[0].start == 0.0


def test_long_audio_is_cut_into_speech_turns_within_the_length_range():
    regions = [Region(0.5, 2.0), Region(2.3, 4.0), Region(7.0, 8.0), Region(10.0, 35.0), Region(35.5, 36.0)]
    bare = VadConfig(merge_gap=1.0, context=0.0)
    got = speech_segments(regions, bare, max_seconds=10.0)
    assert got[:2] == [Region(0.5, 4.0), Region(7.0, 8.0)]  # a 0.3 s pause stays inside; 3 s of silence is skipped
    long = got[2:]  # 10-36 s is one 26 s turn: three equal parts, none over 10 s nor under 5 s
    assert len(long) == 3 and long[0].start == 10.0 and long[-1].end == 36.0
    assert all(5.0 <= r.duration <= 10.0 for r in long)
    assert all(a.end == b.start for a, b in zip(long, long[1:]))
    assert speech_segments([], bare, 10.0) == []
    assert speech_segments([Region(0.0, 10.0)], bare, 10.0) == [Region(0.0, 10.0)]  # exactly the limit: one piece
    # context: each turn keeps up to 0.5 s around it, never past the middle of a gap nor the recording's ends
    wide = speech_segments(regions[:3], VadConfig(merge_gap=1.0, context=0.5), 10.0, total=8.2)
    assert wide == [Region(0.0, 4.5), Region(6.5, 8.2)]
    close = speech_segments([Region(1.0, 2.0), Region(2.4, 3.0)], VadConfig(merge_gap=0.2, context=0.5), 10.0)
    assert close == [Region(0.5, 2.2), Region(2.2, 3.5)]


def test_long_recordings_run_in_blocks_with_the_same_probabilities(data_root, monkeypatch):
    """Blocks carry the LSTM state, so cutting the recording into blocks changes nothing."""
    import sera.vad

    wave = np.concatenate([load_audio(data_root / "ravdess/Actor_01/03-01-05-02-01-01-01.flac"), silence(1.0)] * 3)
    whole = speech_probabilities(wave)
    monkeypatch.setattr(sera.vad, "BLOCK", 7)
    np.testing.assert_allclose(speech_probabilities(wave), whole, atol=1e-5)


def test_trimming_keeps_the_speech_span_with_its_pauses(data_root):
    """Leading and trailing silence go, the pause between two sentences stays; without speech, all stays."""
    clip = load_audio(data_root / "ravdess/Actor_01/03-01-05-02-01-01-01.flac")
    wave = np.concatenate([silence(1.5), clip, silence(0.8), clip, silence(1.0)])
    regions = speech_regions(wave)
    got = trim_to_speech(wave)
    assert len(got) / SR == pytest.approx(regions[-1].end - regions[0].start, abs=1 / SR)
    assert len(got) / SR > sum(r.duration for r in regions) + 0.8  # the gap between the sentences is kept
    assert len(got) < len(wave) - 2.5 * SR  # at least the added silence at both ends is gone
    start = round(regions[0].start * SR)
    np.testing.assert_array_equal(got, wave[start : start + len(got)])
    quiet = silence(2.0)
    assert len(trim_to_speech(quiet)) == len(quiet)
    assert trim_key(VadConfig()) != trim_key(VadConfig(threshold=0.6))  # where a clip is cut is its identity
    assert trim_key(VadConfig()) == trim_key(VadConfig(context=3.0, merge_gap=0.2))  # predict-only settings are not


def test_frames_are_placed_in_or_outside_speech():
    times = frame_times(8, 2.0)  # 0.25, 0.75, ..., 3.75 s
    assert times[0] == 0.25 and times[-1] == 3.75
    assert in_speech(times, as_array([Region(0.5, 1.0), Region(3.0, 3.5)])).tolist() == [
        False, True, False, False, False, False, True, False]
    assert not in_speech(times, as_array([])).any()
