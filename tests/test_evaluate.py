"""The test protocols: a clip-protocol score sees its own clip and the training speakers, nothing else."""

import dataclasses

import numpy as np
import pytest
import torch

from sera.data import Corpus, Fold
from sera.errors import SeraError
from sera.evaluate import cross_validate, protocol_probabilities
from sera.report import results_markdown
from sera.normalise import normalise
from sera.train import finetune

from toy import small_cfg, toy_features


def _trained(mode: str):
    fs, cfg = toy_features(n=32), small_cfg()
    train_idx = [i for i, u in enumerate(fs.utts) if u.speaker != "s3"]
    test_idx = [i for i, u in enumerate(fs.utts) if u.speaker == "s3"]
    L, _, D = fs.feats[0].shape
    model, _ = finetune(normalise(fs.subset(train_idx), mode), None, cfg, L, D, 2, epochs=2, progress=False)
    return fs, model, train_idx, test_idx


def _perturb_all_but(fs, keep: int, idx: list[int]):
    """``fs`` with every test clip except ``keep`` changed (louder, shifted): another recording session."""
    feats = list(fs.feats)
    for i in idx:
        if i != keep:
            feats[i] = (feats[i].float() * 3 + 5).half()
    return dataclasses.replace(fs, feats=feats)


def test_a_clip_protocol_score_uses_no_other_test_clip():
    fs, model, train_idx, test_idx = _trained("speaker")
    first = test_idx[0]
    other = _perturb_all_but(fs, first, test_idx)
    clip = protocol_probabilities(model, fs, train_idx, test_idx, "speaker", "clip")
    clip_other = protocol_probabilities(model, other, train_idx, test_idx, "speaker", "clip")
    assert torch.equal(clip[0], clip_other[0])  # the clip's own scores do not move
    assert not torch.allclose(clip[1:], clip_other[1:])  # while the perturbed clips' do
    # the speaker protocol does use the other clips (their statistics): the test above can fail
    spk = protocol_probabilities(model, fs, train_idx, test_idx, "speaker", "speaker")
    spk_other = protocol_probabilities(model, other, train_idx, test_idx, "speaker", "speaker")
    assert not torch.allclose(spk[0], spk_other[0], atol=1e-4)
    # and the clip protocol uses the training speakers' reference statistics, not none at all
    assert not torch.allclose(clip, protocol_probabilities(model, fs, train_idx, test_idx, "none", "clip"), atol=1e-4)
    with pytest.raises(SeraError, match="protocol 'utterance'"):
        protocol_probabilities(model, fs, train_idx, test_idx, "speaker", "utterance")


def test_without_normalisation_the_two_protocols_coincide():
    fs, model, train_idx, test_idx = _trained("none")
    clip = protocol_probabilities(model, fs, train_idx, test_idx, "none", "clip")
    spk = protocol_probabilities(model, fs, train_idx, test_idx, "none", "speaker")
    assert torch.allclose(clip, spk, atol=1e-5)  # one at a time or batched with padding: the same scores


def test_cross_validation_reports_both_protocols_and_leads_with_the_chosen_one():
    fs, cfg = toy_features(), small_cfg()
    corpus = Corpus("toy", fs.utts, ["0", "1"])
    folds = [Fold(f"s{k}", frozenset(u.id for u in fs.utts if u.speaker == f"s{k}")) for k in range(2)]
    res = cross_validate(fs, corpus, folds, cfg, progress=False)
    assert res["protocol"] == "clip" and set(res["protocols"]) == {"clip", "speaker"}
    assert res["ua"] == res["protocols"]["clip"]["ua"]
    for p in ("clip", "speaker"):  # each protocol's figure is the mean of its own fold results
        ua = [r["metrics"][p]["ua"] for r in res["runs"]]
        assert res["protocols"][p]["ua"]["mean"] == pytest.approx(np.mean(ua))
    md = results_markdown(res)
    assert "Headline: clip protocol" in md and md.index("| **clip** |") < md.index("| speaker |")
    temperatures = [r["temperature"] for r in res["runs"]]  # each fitted on its fold's validation speakers
    assert all(t > 0 for t in temperatures) and res["temperature"] == pytest.approx(np.median(temperatures))
    for p in ("clip", "speaker"):
        eces = [r["metrics"][p]["ece"] for r in res["runs"]]
        assert all(0 <= e <= 1 for e in eces) and res["protocols"][p]["ece"]["mean"] == pytest.approx(np.mean(eces))
    assert "Calibration (expected calibration error" in md
    cfg.data.protocol = "speaker"
    again = cross_validate(fs, corpus, folds, cfg, progress=False)
    assert again["ua"] == res["protocols"]["speaker"]["ua"]  # same models (same seed): only the headline moves


def test_two_corpora_share_six_emotions_under_unified_names(data_root):
    from sera.data import load_corpus, shared_labels
    from sera.config import DataConfig

    ravdess = load_corpus(DataConfig(root=str(data_root), corpus="ravdess"))
    emodb = load_corpus(DataConfig(root=str(data_root), corpus="emodb"))
    a, b = shared_labels(ravdess, emodb)
    assert a.labels == b.labels == ["neutral", "happy", "sad", "angry", "fearful", "disgust"]
    assert {u.label for u in b.utterances} == set(a.labels)  # EmoDB's anger, happiness, ... renamed
    assert len(b.utterances) == sum(u.label != "boredom" for u in emodb.utterances)
    assert len(a.utterances) == sum(u.label not in ("calm", "surprised") for u in ravdess.utterances)
    narrowed = load_corpus(DataConfig(root=str(data_root), corpus="ravdess", classes="angry,sad"))
    assert shared_labels(emodb, narrowed)[0].labels == ["angry", "sad"]  # the first corpus's order


@pytest.mark.slow
def test_cross_corpus_from_the_command_line(tmp_path, data_root, whisper_path, feature_cache):
    """RAVDESS -> EmoDB: trained on RAVDESS speakers only, tested once on EmoDB, both protocols."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "SERA_DATA": str(data_root), "SERA_ENCODER": str(whisper_path), "SERA_CACHE": str(feature_cache)}
    run = subprocess.run([sys.executable, "-m", "sera.cli", "train", "--corpus", "ravdess", "--test-corpus", "emodb",
                          "--quick", "--no-progress", "--out", str(tmp_path / "x")], capture_output=True, text=True,
                         env=env, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "no final checkpoint" in run.stdout and not (tmp_path / "x" / "checkpoint").exists()
    res = json.loads((tmp_path / "x" / "results.json").read_text())
    assert res["labels"] == ["neutral", "happy", "sad", "angry", "fearful", "disgust"]
    [fold] = res["per_fold"]
    assert fold["fold"] == "ravdess -> emodb" and fold["test_utterances"] > 200  # EmoDB's first 8 speakers
    assert res["protocol"] == "clip" and set(res["protocols"]) == {"clip", "speaker"}
    assert res["protocols"]["clip"]["ua"]["mean"] > 0.25, res["protocols"]  # 6 classes: chance is 0.167


def test_emobox_folds_from_a_file(data_root, tmp_path):
    """--folds: EmoBox's 6 actor-disjoint RAVDESS folds, 240 clips each; a bad file is named."""
    import json

    from sera.cli import main
    from sera.config import DataConfig
    from sera.data import load_corpus, make_folds
    from sera.errors import CorpusError

    path = data_root.parent / "folds" / "emobox-ravdess.json"
    cfg = DataConfig(root=str(data_root), corpus="ravdess", folds=str(path))
    corpus = load_corpus(cfg)
    folds = make_folds(corpus, cfg)
    assert len(folds) == 6 and all(len(f.test_ids) == 240 for f in folds)
    assert set().union(*(f.test_ids for f in folds)) == {u.id for u in corpus.utterances}  # each clip tested once
    assert folds[0].name == "1: 01+11+20+21"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"test_speakers": [["01", "99"]]}))
    with pytest.raises(CorpusError, match=r"bad.json: speaker\(s\) 99 are not in ravdess"):
        make_folds(corpus, DataConfig(root=str(data_root), folds=str(bad)))
    assert main(["info", "--data", str(data_root), "--corpus", "ravdess", "--folds", str(bad)]) == 2


def test_folds_run_in_parallel_processes_give_the_runs_one_at_a_time_gives(tmp_path, capsys):
    """``train.jobs``: folds forked two at a time end with the same results as in turn, and resume alike."""
    fs, cfg = toy_features(n=32), small_cfg()
    cfg.train.finetune_epochs, cfg.train.seeds = 2, 2
    corpus = Corpus("toy", fs.utts, ["0", "1"])
    folds = [Fold(f"s{k}", frozenset(u.id for u in fs.utts if u.speaker == f"s{k}")) for k in range(3)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' share: bit-identical arithmetic both ways
    try:
        alone = cross_validate(fs, corpus, folds, cfg, progress=False)
        cfg.train.jobs = 2
        forked = cross_validate(fs, corpus, folds, cfg, progress=False, state=tmp_path / "state", report=True)
    finally:
        torch.set_num_threads(threads)
    assert "6 folds, 2 at a time" in capsys.readouterr().out
    key = lambda r: (r["seed"], r["fold"], r["metrics"], r["best_epoch"], r["val_ua"])  # noqa: E731
    assert [key(r) for r in forked["runs"]] == [key(r) for r in alone["runs"]]  # same order too
    assert forked["protocols"] == alone["protocols"] and len(list((tmp_path / "state").glob("*/result.json"))) == 6
    cfg.train.jobs = 1  # the number of jobs is no part of a run's identity: this resumes
    again = cross_validate(fs, corpus, folds, cfg, progress=False, state=tmp_path / "state", report=True)
    assert capsys.readouterr().out.count("done before (resumed)") == 6 and again["protocols"] == alone["protocols"]
    with pytest.raises(SeraError, match="train.jobs"):
        cfg.updated({"train.jobs": 0})


def test_results_name_their_code_and_a_resume_refuses_other_code(tmp_path):
    import json

    from sera.provenance import code_version

    fs, cfg = toy_features(), small_cfg()
    cfg.train.finetune_epochs = 1
    corpus = Corpus("toy", fs.utts, ["0", "1"])
    folds = [Fold("s0", frozenset(u.id for u in fs.utts if u.speaker == "s0"))]
    res = cross_validate(fs, corpus, folds, cfg, progress=False, state=tmp_path / "state")
    assert res["code"] == [code_version()] and res["runs"][0]["code"]["source"] == code_version()["source"]
    code = tmp_path / "state" / "code.json"
    code.write_text(json.dumps({**code_version(), "source": "0" * 16, "commit": "abc123", "dirty": True}))
    with pytest.raises(SeraError, match=r"made by other code \(commit abc123, uncommitted changes\)"):
        cross_validate(fs, corpus, folds, cfg, progress=False, state=tmp_path / "state")


def test_a_prediction_says_which_protocol_it_uses(demo_checkpoint, tmp_path):
    import json
    import shutil

    from sera.predict import Predictor

    note = Predictor(demo_checkpoint).protocol_note()
    assert note.startswith("Clip protocol") and "reference statistics" in note  # a speaker-normalised checkpoint
    assert Predictor(demo_checkpoint).protocol_note(same_speaker=True).startswith("Speaker protocol")
    copy = shutil.copytree(demo_checkpoint, tmp_path / "ckpt")
    meta = json.loads((copy / "config.json").read_text())
    meta["cv"] = {"clip": {"ua": {"mean": 0.7061, "std": 0.0}}, "speaker": {"ua": {"mean": 0.778, "std": 0.0}}}
    (copy / "config.json").write_text(json.dumps(meta))
    predictor = Predictor(copy)
    assert predictor.protocol_note().endswith("cross-validated UA in this protocol: 70.6%.")
    assert predictor.protocol_note(same_speaker=True).endswith("protocol: 77.8%.")


def test_only_evaluate_and_train_take_a_test_corpus(tmp_path, capsys):
    from sera.cli import main

    for command in ("pretrain", "finetune"):
        assert main([command, "--corpus", "ravdess", "--test-corpus", "emodb", "--out", str(tmp_path)]) == 2
        assert f"sera {command} would train on the test corpus too" in capsys.readouterr().err


def test_each_corpus_is_scored_on_its_own_clips_and_classes():
    """A model trained on RAVDESS + EmoDB: each corpus's UA counts only its clips and the classes it has."""
    import numpy as np

    from sera.metrics import corpus_metrics

    y = np.array([0, 0, 1, 8, 8])  # class 8 (boredom) only in EmoDB
    pred = np.array([0, 1, 1, 8, 0])
    got = corpus_metrics(y, pred, 9, np.array(["ravdess", "ravdess", "ravdess", "emodb", "emodb"]))
    assert got["ravdess"]["ua"] == pytest.approx(0.75) and got["ravdess"]["wa"] == pytest.approx(2 / 3)
    assert got["emodb"]["ua"] == pytest.approx(0.5)  # an EmoDB clip called "neutral" (0) is wrong, not a class of its own
    assert got["ravdess"]["f1"] == pytest.approx((2 / 3 + 2 / 3) / 2)  # classes 0 and 1 only, not all 9


def test_a_seed_ensemble_averages_the_seeds_test_probabilities_fold_by_fold():
    """Two seeds each right on half the clips, wrong with low confidence on the other half: alone each
    scores UA 0.5, their averaged probabilities get every clip right (+0.5 over one seed)."""
    from sera.evaluate import FoldResult, seed_ensemble

    fs = toy_features(n=4)
    fs.labels = torch.tensor([0, 1, 0, 1])
    fold = Fold("all", frozenset(u.id for u in fs.utts))
    first = [[0.9, 0.1], [0.1, 0.9], [0.4, 0.6], [0.6, 0.4]]  # clips 0, 1 right, clips 2, 3 narrowly wrong
    second = [[0.4, 0.6], [0.6, 0.4], [0.9, 0.1], [0.1, 0.9]]  # the other way round

    def run(seed: int, probs: list) -> FoldResult:
        return FoldResult("all", seed, {"clip": {"ua": 0.5}}, 1, None, 0.0, 0.0, 0.0, 0.0,
                          test_probabilities={"clip": probs})

    ensemble = seed_ensemble([run(0, first), run(1, second)], fs, [fold], "clip", 2)
    assert ensemble["seeds"] == 2 and ensemble["ua"] == 1.0 and ensemble["mean_gain"] == 0.5
    assert ensemble["folds_gained"] == 1
    assert seed_ensemble([run(0, first)], fs, [fold], "clip", 2) is None  # one seed: no ensemble
    old = dataclasses.replace(run(1, second), test_probabilities=None)  # kept by an older sera
    assert seed_ensemble([run(0, first), old], fs, [fold], "clip", 2) is None


def test_model_selection_never_reads_the_test_fold():
    """evaluate.fit_fold (what bench/search.py judges trials by): the test speaker's clips turned to NaN leave
    stage 1, stage 2, the probe and the validation scores exactly as they were."""
    from sera.checkpoint import model_state_equal
    from sera.evaluate import fit_fold

    fs, cfg = toy_features(n=40), small_cfg()
    cfg.model.probe_weight = 0.5
    fold = Fold("s0", frozenset(u.id for u in fs.utts if u.speaker == "s0"))
    poisoned = dataclasses.replace(fs, feats=[torch.full_like(h, float("nan")) if u.id in fold.test_ids else h
                                              for u, h in zip(fs.utts, fs.feats)])
    clean, other = (fit_fold(f, fold, cfg, 2, progress=False) for f in (fs, poisoned))
    assert clean.val_idx and not set(clean.train_idx) & {i for i, u in enumerate(fs.utts) if u.id in fold.test_ids}
    assert model_state_equal(clean.model, other.model) and clean.val_fusion == other.val_fusion
    assert torch.equal(clean.val_probs, other.val_probs) and clean.history == other.history
