import pytest

from sera.config import CLEAN_CLIPS, RAW_FEATURES, DataConfig, SeraConfig
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


def test_settings_and_presets():
    from sera.config import PAPER_ENCODER

    cfg = SeraConfig().updated({"model.width": 128, "train.lr": 1})
    assert cfg.model.width == 128 and cfg.train.lr == 1.0
    with pytest.raises(SeraError, match="unknown setting"):
        SeraConfig().updated({"model.widht": 128})
    with pytest.raises(SeraError, match="expected int"):
        SeraConfig().updated({"model.width": "wide"})
    with pytest.raises(SeraError, match="not one of"):
        SeraConfig().updated({"model.pooling": "max"})
    with pytest.raises(SeraError, match="model.probe_weight: 1.5; a share between 0 and 1"):
        SeraConfig().updated({"model.probe_weight": 1.5})
    paper = SeraConfig.preset("paper-iemocap")
    assert paper.encoder.name == PAPER_ENCODER and paper.data.corpus == "iemocap" and paper.model.layers == 3
    ship = SeraConfig.preset("reproduce")  # make reproduce's recipe: speaker statistics of every size in training
    assert (ship.data.normalise, ship.train.stats_dropout, ship.model.probe_view) == ("speaker", 0.5, "reference")
    travel, raw = SeraConfig.preset("travel").to_dict(), ship.updated(RAW_FEATURES).to_dict()
    assert raw["data"]["normalise"] == "none" and raw["train"]["stats_dropout"] == 0.0
    copies = lambda d: (d["train"].pop("finetune_augment"), d["train"].pop("finetune_copies"))  # noqa: E731
    assert copies(travel) == ("noise,telephone,room", "add") and copies(raw) == ("noise|telephone|room", "swap")
    assert travel == raw  # make reproduce's recipe on raw features, with three copies of each clip read every epoch
    clean = ship.updated(CLEAN_CLIPS).to_dict()
    assert clean["train"] == SeraConfig().to_dict()["train"]  # the clips alone, as stage 2 trained before copies
    assert clean["data"]["normalise"] == "none" and clean["model"] == SeraConfig().updated(
        {"model.probe_weight": 0.5}).to_dict()["model"]  # raw features, the probe averaged in: the benchmarks' base
    with pytest.raises(SeraError, match="unknown preset"):
        SeraConfig.preset("nope")
