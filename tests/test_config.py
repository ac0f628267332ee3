import pytest

from sera.config import CLEAN_CLIPS, DataConfig, SeraConfig
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
    travel, ship = SeraConfig.preset("travel").to_dict(), SeraConfig.preset("reproduce").to_dict()
    copies = lambda d: (d["train"].pop("finetune_augment"), d["train"].pop("finetune_copies"))  # noqa: E731
    assert copies(travel) == ("noise,telephone,room", "add") and copies(ship) == ("noise|telephone|room", "swap")
    assert travel == ship  # make reproduce's recipe, with three copies of each clip read every epoch
    speaker = SeraConfig.preset("speaker")  # make reproduce's recipe, speaker-normalised for the enrol route
    assert (speaker.data.normalise, speaker.train.stats_dropout, speaker.model.probe_view) == ("speaker", 0.5, "reference")
    assert speaker.updated({"data.normalise": "none", "train.stats_dropout": 0.0, "model.probe_view": "speaker"}
                           ).to_dict() == SeraConfig.preset("reproduce").to_dict()
    clean = SeraConfig.preset("reproduce").updated(CLEAN_CLIPS).to_dict()
    assert clean["train"] == SeraConfig().to_dict()["train"]  # the clips alone, as stage 2 trained before copies
    with pytest.raises(SeraError, match="unknown preset"):
        SeraConfig.preset("nope")
