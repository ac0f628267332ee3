"""The `sera` command as a user runs it: a subprocess, real flags, exit codes and one-line errors."""

import os
import subprocess
import sys

from conftest import write_audio


def sera(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sera.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_help_lists_commands():
    out = sera("--help")
    assert out.returncode == 0
    for command in ("info", "extract", "train", "evaluate", "pretrain", "finetune", "predict"):
        assert command in out.stdout


def test_info_shows_folds(data_root):
    out = sera("info", "--corpus", "emodb", "--data", str(data_root))
    assert out.returncode == 0, out.stderr
    assert "emodb: 535 utterances" in out.stdout and "fold speakers 15+16: 127 test utterances" in out.stdout


def test_extract_then_resume_from_the_command_line(tmp_path, tiny_hubert):
    for i in range(3):
        write_audio(tmp_path / "data" / ("happy" if i % 2 else "sad") / f"spk{i}_{i}.wav", 0.7, seed=i)
    args = ["extract", "--corpus", str(tmp_path / "data"), "--encoder", str(tiny_hubert),
            "--cache", str(tmp_path / "cache"), "--no-progress"]
    first = sera(*args)
    assert first.returncode == 0, first.stderr
    assert "3 extracted, 0 already cached, 0 failed" in first.stdout
    second = sera(*args)
    assert "0 extracted, 3 already cached" in second.stdout
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) == 3
    subset = sera(*args, "--set", "encoder.layers=0,2", "--set", "model.frame_stride=2")  # another cache
    assert subset.returncode == 0 and "3 extracted" in subset.stdout, subset.stderr
    stored = sorted(p.parent.parent.name for p in (tmp_path / "cache").rglob("*.safetensors"))
    assert stored == ["stride2"] * 3 + ["stride4"] * 3


def test_user_errors_are_one_clear_line(tmp_path):
    out = sera("info", "--corpus", "nosuch", "--data", str(tmp_path))
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "unknown corpus 'nosuch'" in out.stderr
    out = sera("extract", "--corpus", "ravdess", "--data", str(tmp_path))
    assert out.returncode == 2 and "no RAVDESS folder" in out.stderr
    bad_config = tmp_path / "c.json"
    bad_config.write_text('{"data": {"corpuss": "x"}}')
    out = sera("info", "--config", str(bad_config))
    assert out.returncode == 2 and "unknown setting(s) corpuss" in out.stderr
    out = sera("info", "--corpus", "nosuch", "--debug")
    assert out.returncode != 0 and "Traceback" in out.stderr


def test_paper_preset_and_bad_settings(tmp_path):
    out = sera("train", "--preset", "paper-iemocap", "--data", str(tmp_path), "--out", str(tmp_path / "o"))
    assert out.returncode == 2 and "IEMOCAP" in out.stderr  # the preset points at IEMOCAP, which is not here
    out = sera("train", "--set", "model.widht=3", "--out", str(tmp_path / "o"))
    assert out.returncode == 2 and "model.widht: unknown setting" in out.stderr
    out = sera("train", "--set", "data.normalise=utterance", "--probe", "0.5", "--out", str(tmp_path / "o"))
    assert out.returncode == 2 and "--probe 0" in out.stderr  # a probe on zero means would read nothing


def test_make_reproduce_the_preset_and_notebook_06_train_one_config():
    """What `make reproduce` runs is `sera train --preset reproduce`, which is the preset notebook 06 hands to
    sera.recipe.train: one config, whichever door a user takes."""
    import re
    import shlex
    from pathlib import Path

    import nbformat

    from sera.cli import build_parser, training_config
    from sera.config import SeraConfig

    root = Path(__file__).resolve().parents[1]
    line = next(ln for ln in (root / "Makefile").read_text().splitlines() if "sera train" in ln and "reproduce" in ln)
    argv = shlex.split(re.sub(r"\$\(BIN\)/sera |\$\(JOBS\)", lambda m: "" if "sera" in m[0] else "2", line.strip()))
    args = build_parser().parse_args(argv)
    assert args.preset == "reproduce" and args.out == "runs/ravdess+emodb"
    made = training_config(args)
    preset = SeraConfig.preset("reproduce")
    assert made.to_dict() == preset.updated({"train.jobs": 2}).to_dict()
    assert (preset.data.corpus, preset.data.normalise, preset.model.probe_weight) == ("ravdess+emodb", "speaker", 0.5)
    flags = training_config(build_parser().parse_args(
        ["train", "--corpus", "ravdess+emodb", "--probe", "0.5", "--out", "x", "--set", "train.stats_dropout=0.5",
         "--set", "model.probe_view=reference", "--set", "train.finetune_augment=noise|telephone|room",
         "--set", "train.finetune_copies=swap"]))
    assert flags.to_dict() == preset.to_dict()  # the preset spelled out in flags: the same run

    book = nbformat.read(root / "notebooks" / "06_reproduce.ipynb", as_version=4)
    code = "\n".join(c.source for c in book.cells if c.cell_type == "code")
    assert 'SeraConfig.preset("reproduce")' in code and "recipe.train(cfg" in code


def test_recipe_reproduce_trains_the_preset(monkeypatch, tmp_path):
    from sera import recipe
    from sera.config import SeraConfig

    seen = {}
    monkeypatch.setattr(recipe, "train", lambda cfg, out, progress=True: seen.update(cfg=cfg, out=out) or {})
    recipe.reproduce(tmp_path, jobs=2)
    assert seen["cfg"].to_dict() == SeraConfig.preset("reproduce").updated({"train.jobs": 2}).to_dict()
    recipe.reproduce(tmp_path, quick=True)
    assert seen["cfg"].train.quick and seen["cfg"].data.corpus == "ravdess+emodb" and seen["out"] == tmp_path


def test_sera_predict_with_whisper_imports_no_transformers(demo_checkpoint, data_root):
    """The checkpoint records its encoder folder's content fingerprint: ``sera predict`` then reads the Whisper
    encoder's config, weights and log-mel settings itself (transformers' import is half a second of a 3 s start)."""
    import json

    clip = data_root / "ravdess" / "Actor_21" / "03-01-05-02-01-01-21.flac"
    code = ("import json, sys; from sera.cli import main; rc = main(['predict', '--checkpoint', sys.argv[1], sys.argv[2], "
            "'--json']); print(json.dumps({'rc': rc, 'transformers': 'transformers' in sys.modules}))")
    run = subprocess.run([sys.executable, "-c", code, str(demo_checkpoint), str(clip)], capture_output=True, text=True,
                         timeout=300)
    *predictions, status = run.stdout.strip().splitlines()
    assert json.loads(status) == {"rc": 0, "transformers": False}, run.stderr[-2000:]
    [item] = json.loads("\n".join(predictions))
    assert item["file"] == str(clip) and item["label"] in ("angry", "happy", "neutral", "sad")
