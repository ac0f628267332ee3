"""The frozen upstream: Whisper equivalence with transformers, and random-config HuBERT-family models."""

import copy

import pytest
import torch

from conftest import save_random_encoder, tone
from sera.audio import load_audio
from sera.config import EncoderConfig
from sera.encoders import Encoder, encoder_identity
from sera.errors import EncoderError


@pytest.fixture(scope="module")
def whisper(whisper_path):
    return Encoder(EncoderConfig(name=str(whisper_path)))


@pytest.fixture(scope="module")
def clip(data_root):
    wave = load_audio(data_root / "ravdess/Actor_01/03-01-05-01-01-01-01.flac")
    return wave[:40_000]  # 2.5 s: 250 mel frames, 125 encoder frames


def test_whisper_real_length_equals_transformers_encoder_on_unpadded_input(whisper, clip):
    """transformers' own WhisperEncoder.forward, given position embeddings for exactly this length."""
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from transformers.models.whisper.feature_extraction_whisper import WhisperFeatureExtractor

    mel = WhisperFeatureExtractor.from_pretrained(whisper.cfg.name)(clip, sampling_rate=16_000, padding="longest",
                                                                   return_tensors="pt").input_features
    frames = mel.shape[-1] // 2
    cfg = copy.deepcopy(whisper.config)
    cfg.max_source_positions = frames
    reference = WhisperEncoder(cfg).eval()
    state = whisper.model.state_dict()
    state["embed_positions.weight"] = state["embed_positions.weight"][:frames]
    reference.load_state_dict(state)
    with torch.no_grad():
        expected = torch.stack(reference(mel, output_hidden_states=True).hidden_states)[:, 0]
    [ours] = whisper([clip])
    assert ours.shape == (5, frames, 384) == expected.shape
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)


def test_whisper_padded_option_reproduces_transformers_exactly(whisper_path, whisper, clip):
    from transformers import WhisperModel

    from transformers.models.whisper.feature_extraction_whisper import WhisperFeatureExtractor

    padded = Encoder(EncoderConfig(name=str(whisper_path), whisper_padded=True))
    mel = WhisperFeatureExtractor.from_pretrained(str(whisper_path))(clip, sampling_rate=16_000,
                                                                    return_tensors="pt").input_features
    assert mel.shape[-1] == 3000
    reference = WhisperModel.from_pretrained(str(whisper_path), dtype=torch.float32).get_encoder().eval()
    with torch.no_grad():
        full = torch.stack(reference(mel, output_hidden_states=True).hidden_states)[:, 0]
    [ours] = padded([clip])
    assert ours.shape[1] == 125
    assert torch.equal(ours, full[:, :125])
    # The real-length run is close after the stem and drifts in deeper layers (no attention mask in Whisper).
    [real] = whisper([clip])
    cos = torch.nn.functional.cosine_similarity(real, ours, dim=-1).mean(dim=1)
    assert cos[0] > 0.99 and cos[-1] < cos[0]
    assert padded.key != whisper.key


def test_a_local_whisper_loads_without_transformers_whisper_module(whisper_path, whisper):
    """sera.whisper holds the same weights under the same names as transformers' encoder, and loading a
    model folder does not import transformers' modeling_whisper (seconds of sera predict's start-up)."""
    import subprocess
    import sys

    from transformers import WhisperModel

    from sera.whisper import WhisperEncoder

    assert isinstance(whisper.model, WhisperEncoder)
    reference = WhisperModel.from_pretrained(str(whisper_path), dtype=torch.float32).get_encoder()
    ours, theirs = whisper.model.state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    code = ("import sys; from sera.encoders import Encoder; from sera.config import EncoderConfig; "
            f"Encoder(EncoderConfig(name={str(whisper_path)!r})); "
            "print('transformers.models.whisper.modeling_whisper' in sys.modules, 'torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False", "False"], out.stderr[-2000:]


def test_whisper_log_mel_is_transformers_feature_extractor_bit_for_bit(whisper_path, whisper, clip):
    """sera.whisper.LogMel computes WhisperFeatureExtractor's log-mel (filters, STFT, scaling) without importing
    transformers: the clip's real length, an odd length of noise, and padded to 30 s."""
    import numpy as np
    from transformers.models.whisper.feature_extraction_whisper import WhisperFeatureExtractor

    theirs = WhisperFeatureExtractor.from_pretrained(str(whisper_path))
    ours = whisper.feature_extractor
    np.testing.assert_allclose(ours.mel_filters, theirs.mel_filters, atol=1e-12)
    noise = np.random.default_rng(0).normal(0, 0.1, 16_000 + 77).astype(np.float32)
    for wave, padded in ((clip, False), (noise, False), (clip, True)):
        expected = theirs(wave, sampling_rate=16_000, return_tensors="pt",
                          padding="max_length" if padded else "longest").input_features
        assert torch.equal(ours(wave, padded), expected), (len(wave), padded)
    from sera.whisper import LogMel

    assert LogMel.of_folder(None, 128).mel_filters.shape == (201, 128)  # large-v3 fetched without its settings file


def test_a_checkpoint_fingerprint_gives_the_key_without_transformers(tmp_path, whisper_path, whisper):
    """A checkpoint records its encoder folder's content fingerprint; an encoder folder with the same files (moved
    or copied) then takes the recorded key and loads without importing transformers; other files, or another
    setting, are checked the full way."""
    import shutil
    import subprocess
    import sys

    from sera.encoders import content_fingerprint

    cfg = EncoderConfig(name=str(whisper_path))
    fingerprint = content_fingerprint(cfg)
    assert set(fingerprint["files"]) >= {"config.json", "preprocessor_config.json", "model.safetensors"}
    moved = tmp_path / "moved"
    shutil.copytree(whisper_path, moved)
    known = {"key": whisper.key, "fingerprint": fingerprint}
    code = ("import sys, json; from sera.encoders import Encoder; from sera.config import EncoderConfig; "
            f"e = Encoder(EncoderConfig(name={str(moved)!r}), known=json.loads(sys.argv[1])); "
            "print(e.key, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, __import__("json").dumps(known)], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.split() == [whisper.key, "False"], out.stderr[-2000:]
    assert Encoder(EncoderConfig(name=str(moved)), known={**known, "key": "forged"}).key == "forged"  # trusted record
    (moved / "preprocessor_config.json").write_text((moved / "preprocessor_config.json").read_text().replace(
        '"n_fft": 400', '"n_fft": 512'))
    other = Encoder(EncoderConfig(name=str(moved)), known={**known, "key": "forged"})
    assert other.key not in ("forged", whisper.key) and other.identity["preprocessor"]["n_fft"] == 512
    padded = Encoder(EncoderConfig(name=str(whisper_path), whisper_padded=True), known=known)
    assert padded.key != whisper.key  # a setting outside the files is part of the fingerprint


def test_whisper_long_audio_runs_in_pieces(whisper):
    [feats] = whisper([tone(35.0)])
    assert feats.shape[0] == 5 and abs(feats.shape[1] - 35 * 50) <= 2


@pytest.mark.parametrize("kind, norm", [("hubert", "layer"), ("wav2vec2", "group"), ("wavlm", "layer"), ("data2vec-audio", "layer")])
def test_random_config_encoders_load_by_path(tmp_path, kind, norm):
    extra = {"do_stable_layer_norm": True} if norm == "layer" and kind != "data2vec-audio" else {}
    folder = save_random_encoder(kind, tmp_path / kind, feat_extract_norm=norm, **extra)
    enc = Encoder(EncoderConfig(name=str(folder)))
    assert (enc.num_layers, enc.dim) == (3, 32)
    assert enc.supports_padding == (norm == "layer" and kind != "data2vec-audio")
    waves = [tone(1.0, seed=1), tone(0.6, seed=2), tone(1.3, seed=3)]
    feats = enc(waves)
    for w, f in zip(waves, feats):
        assert f.shape == (3, int(enc.model._get_feat_extract_output_lengths(len(w))), 32)
        assert f.dtype == torch.float32 and torch.isfinite(f).all()
    assert abs(feats[0].shape[1] - 50) <= 1  # 50 frames per second
    # A batch with padding gives each clip the features it gets alone.
    for w, f in zip(waves, feats):
        torch.testing.assert_close(enc([w])[0], f, atol=1e-4, rtol=1e-4)


def test_long_clip_pieces_cover_the_whole_clip(tiny_hubert):
    enc = Encoder(EncoderConfig(name=str(tiny_hubert)))
    [feats] = enc([tone(70.0)])
    assert abs(feats.shape[1] - 70 * 50) <= 5


def test_identity_changes_with_weights_and_options(tmp_path, tiny_hubert):
    other = save_random_encoder("hubert", tmp_path / "other", feat_extract_norm="layer", do_stable_layer_norm=True,
                                hidden_size=48)
    key1, ident = encoder_identity(EncoderConfig(name=str(tiny_hubert)))
    key2, _ = encoder_identity(EncoderConfig(name=str(other)))
    assert key1 != key2 and key1.startswith("hubert-") and ident["model_type"] == "hubert"
    assert encoder_identity(EncoderConfig(name=str(tiny_hubert)))[0] == key1  # stable
    assert encoder_identity(EncoderConfig(name=str(tiny_hubert), layers="::2"))[0] != key1


def test_identity_is_the_content_not_the_folder_nor_the_device(tmp_path, tiny_hubert, monkeypatch):
    """A copy, a symlink and a trailing slash are the same encoder; so is the same model on a GPU."""
    import shutil

    key = encoder_identity(EncoderConfig(name=str(tiny_hubert)))[0]
    copy_ = shutil.copytree(tiny_hubert, tmp_path / "elsewhere" / "my-model")
    (tmp_path / "link").symlink_to(tiny_hubert, target_is_directory=True)
    for name in (str(copy_), str(tmp_path / "link"), str(tiny_hubert) + "/"):
        assert encoder_identity(EncoderConfig(name=name))[0] == key, name
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # faked: CI has no GPU
    assert encoder_identity(EncoderConfig(name=str(copy_), device="auto"))[0] == key


def test_identity_sees_a_weight_changed_mid_file_and_the_feature_extractor(tmp_path, tiny_hubert):
    import json
    import shutil

    big = save_random_encoder("hubert", tmp_path / "big", intermediate_size=8192)  # weights over 3 MiB
    key = encoder_identity(EncoderConfig(name=str(big)))[0]
    changed = shutil.copytree(big, tmp_path / "changed")
    weights = changed / "model.safetensors"
    data = bytearray(weights.read_bytes())
    assert len(data) > 3 << 20  # the middle is more than a MiB from either end
    data[len(data) // 2] ^= 0x01  # one bit of one weight, in the middle of the file
    weights.write_bytes(bytes(data))
    assert encoder_identity(EncoderConfig(name=str(changed)))[0] != key
    key = encoder_identity(EncoderConfig(name=str(tiny_hubert)))[0]
    fe = shutil.copytree(tiny_hubert, tmp_path / "fe")
    settings = json.loads((fe / "preprocessor_config.json").read_text())
    settings["do_normalize"] = not settings["do_normalize"]
    (fe / "preprocessor_config.json").write_text(json.dumps(settings))
    assert encoder_identity(EncoderConfig(name=str(fe)))[0] != key


def test_a_hub_cache_snapshot_hashes_like_a_local_folder(tmp_path, tiny_hubert, monkeypatch):
    """The hub cache names each weight blob by its SHA-256: a hub id resolved there gets the folder's key."""
    import hashlib
    import shutil

    repo = tmp_path / "hub" / "models--someone--tiny-hubert"
    snapshot = repo / "snapshots" / ("a" * 40)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("a" * 40)
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for f in tiny_hubert.iterdir():
        blob = repo / "blobs" / (hashlib.sha256(f.read_bytes()).hexdigest() if f.suffix == ".safetensors" else f.name)
        shutil.copy(f, blob)
        (snapshot / f.name).symlink_to(blob)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert encoder_identity(EncoderConfig(name="someone/tiny-hubert"))[0] == encoder_identity(
        EncoderConfig(name=str(tiny_hubert)))[0]


def test_layer_selection_keeps_those_hidden_states(tiny_hubert):
    from sera.encoders import select_layers

    full = Encoder(EncoderConfig(name=str(tiny_hubert)))
    some = Encoder(EncoderConfig(name=str(tiny_hubert), layers="0,2"))
    wave = tone(0.8, seed=4)
    assert some.num_layers == 2 and torch.equal(some([wave])[0], full([wave])[0][[0, 2]])
    assert select_layers("::2", 25) == list(range(0, 25, 2)) and select_layers("", 3) == [0, 1, 2]
    for bad in ("0,3", "x", "5:", "::0"):
        with pytest.raises(EncoderError, match="hidden states"):
            select_layers(bad, 3)


def test_missing_folder_and_unreachable_hub_say_what_to_do(tmp_path, monkeypatch):
    with pytest.raises(EncoderError, match="no such encoder folder"):
        Encoder(EncoderConfig(name=str(tmp_path / "nope")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EncoderError, match=r"--encoder PATH or SERA_ENCODER=PATH"):
        Encoder(EncoderConfig(name="openai/whisper-tiny.en-does-not-exist"))


def test_unsupported_model_type(tmp_path):
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)).save_pretrained(tmp_path)
    with pytest.raises(EncoderError, match="not a supported speech encoder"):
        Encoder(EncoderConfig(name=str(tmp_path)))
