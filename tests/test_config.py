import pytest

from sera.config import DataConfig, SeraConfig
from sera.errors import SeraError


def test_roundtrip_and_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SERA_DATA", "/somewhere/data")
    cfg = SeraConfig()
    assert cfg.data.root == "/somewhere/data"
    cfg.data.corpus, cfg.encoder.whisper_padded, cfg.audio.max_seconds = "emodb", True, 12
    cfg.save(tmp_path / "c.json")
    assert SeraConfig.load(tmp_path / "c.json") == cfg


def test_bad_config_is_named(tmp_path):
    with pytest.raises(SeraError, match=r"config.data: unknown setting\(s\) nope"):
        SeraConfig.from_dict({"data": {"nope": 1}})
    with pytest.raises(SeraError, match="config.seed: expected int"):
        SeraConfig.from_dict({"seed": "zero"})
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(SeraError, match="not a readable sera config"):
        SeraConfig.load(tmp_path / "broken.json")
    assert SeraConfig.from_dict({"audio": {"max_seconds": 5}}).audio.max_seconds == 5
    assert DataConfig().speaker_dependent is False
