"""The ``sera`` command: a thin layer that turns flags into a SeraConfig and calls the library."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .config import ABLATIONS, PROTOCOLS, SeraConfig, parse_sets
from .errors import SeraError


def _common(p: argparse.ArgumentParser, corpus: bool = True) -> None:
    p.add_argument("--config", metavar="JSON", help="a saved SeraConfig to start from (flags override it)")
    p.add_argument("--data", metavar="DIR", help="folder holding the corpora (default: $SERA_DATA or ./data)")
    p.add_argument("--encoder", metavar="ID|PATH", help="hub id or local model folder (default: $SERA_ENCODER "
                   "or openai/whisper-base)")
    p.add_argument("--cache", metavar="DIR", help="feature cache folder (default: $SERA_CACHE or ~/.cache/sera)")
    if corpus:
        p.add_argument("--corpus", help="ravdess, emodb, iemocap, crema-d, a manifest .csv (path,label,speaker"
                       "[,split]) or a folder with one subfolder per label (default: ravdess)")
        p.add_argument("--classes", help='class map, e.g. "neutral,happy,sad,angry" or "hap=happy,exc=happy,..."')
        p.add_argument("--folds", metavar="JSON", help="each fold's test speakers from a file (e.g. EmoBox's RAVDESS "
                       "folds: ../shared/folds/emobox-ravdess.json) instead of sera's standard folds")
        p.add_argument("--speaker-dependent", action="store_true",
                       help="random utterance folds instead of speaker-independent ones (flagged in every result)")
        p.add_argument("--allow-outside-root", action="store_true", help="let manifest paths leave the manifest's folder")
    p.add_argument("--whisper-padded", action="store_true", help="pad Whisper input to 30 s as transformers does")
    p.add_argument("--trim-silence", action="store_true", help="encode each clip from its first to its last speech "
                   "(Silero VAD); a cache and checkpoints of their own")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")


def config_from_args(args: argparse.Namespace) -> SeraConfig:
    if getattr(args, "config", None) and getattr(args, "preset", None):
        raise SeraError("give --config or --preset, not both")
    if getattr(args, "preset", None):
        cfg = SeraConfig.preset(args.preset)
    else:
        cfg = SeraConfig.load(args.config) if getattr(args, "config", None) else SeraConfig()
    for flag, (section, name) in {
        "data": ("data", "root"), "corpus": ("data", "corpus"), "classes": ("data", "classes"),
        "encoder": ("encoder", "name"), "cache": (None, "cache_dir"), "seed": (None, "seed"),
        "protocol": ("data", "protocol"), "test_corpus": ("data", "test_corpus"), "folds": ("data", "folds"),
        "jobs": ("train", "jobs"), "probe": ("model", "probe_weight"), "pretrain_audio": ("train", "pretrain_audio"),
    }.items():
        value = getattr(args, flag, None)
        if value is not None:
            setattr(getattr(cfg, section) if section else cfg, name, value)
    for flag, (section, name) in {
        "speaker_dependent": ("data", "speaker_dependent"), "allow_outside_root": ("data", "allow_outside_root"),
        "whisper_padded": ("encoder", "whisper_padded"), "trim_silence": ("vad", "trim"),
        "pool_speech": ("vad", "pool_speech"),
    }.items():
        if getattr(args, flag, False):
            setattr(getattr(cfg, section), name, True)
    return cfg


def _set_flag(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--set", action="append", default=[], metavar="SECTION.NAME=VALUE", help=help)


def _training_flags(p: argparse.ArgumentParser) -> None:
    from .config import PRESETS

    p.add_argument("--out", required=True, metavar="DIR", help="output folder (results, checkpoint)")
    p.add_argument("--preset", choices=sorted(PRESETS), help="a named setting (flags given with it override it): "
                   "reproduce, what make reproduce ships (RAVDESS + EmoDB, speaker statistics of every size, "
                   "probe 0.5); travel, reproduce on raw features with stage 2 on noise, telephone and room copies "
                   "(for other microphones); paper-iemocap, HuBERT large on IEMOCAP, 4 classes, leave-one-session-out")
    p.add_argument("--quick", action="store_true", help="a few speakers, 2 folds, 1 seed, few epochs (CI)")
    p.add_argument("--test-corpus", metavar="NAME", help="cross-corpus: train on all of --corpus, test once on all "
                   "of this corpus, over the emotions both have (unified names: anger = angry, fear = fearful, ...)")
    p.add_argument("--protocol", choices=PROTOCOLS, help="test protocol of the headline figures; both are "
                   "always scored. clip (default): each test clip alone, as sera predict sees it; speaker: each test "
                   "speaker standardised with all their own clips")
    p.add_argument("--jobs", type=int, metavar="N", help="cross-validation folds trained at once, each in its own "
                   "process (CPU; default 1). On 2 cores, --jobs 2 finishes sooner")
    p.add_argument("--pool-speech", action="store_true", help="SAP weighs the speech frames only (Silero VAD); "
                   "the Transformer still sees every frame")
    p.add_argument("--probe", type=float, metavar="W", help="average a linear probe on every layer's time mean "
                   "(fitted after stage 2) into the head's probabilities with weight W (model.probe_weight; "
                   "make reproduce: 0.5)")
    p.add_argument("--pretrain-audio", metavar="DIR[,DIR]", help="stage 1 also learns from every audio file below "
                   "these folders (recursive; no labels needed; train.pretrain_audio)")
    _set_flag(p, "any config field, e.g. --set train.seeds=1 --set model.width=128")
    for name, (flag, _) in ABLATIONS.items():
        p.add_argument(flag, action="store_true", help=f"ablation: {name}")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--fresh", action="store_true", help="start over instead of resuming an unfinished run in --out")


def training_config(args: argparse.Namespace) -> SeraConfig:
    from .pipeline import apply_quick

    cfg = config_from_args(args).updated(parse_sets(args.set))
    for flag, settings in ABLATIONS.values():
        if getattr(args, flag[2:].replace("-", "_")):
            cfg = cfg.updated(settings)
    return apply_quick(cfg) if args.quick else cfg


def _out(args: argparse.Namespace):
    """The output folder; ``--fresh`` forgets an unfinished run kept there."""
    import shutil
    out = Path(args.out)
    if getattr(args, "fresh", False):
        shutil.rmtree(out / "state", ignore_errors=True)
    return out


def cmd_train(args: argparse.Namespace) -> int:
    """sera train and sera evaluate: cross-validation, then (train) a final checkpoint (sera.recipe.train)."""
    from .recipe import train

    train(training_config(args), _out(args), final=args.command == "train" and not args.no_final,
          progress=not args.no_progress)
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    from .recipe import pretrain

    pretrain(training_config(args), _out(args), progress=not args.no_progress)
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from .recipe import finetune

    finetune(training_config(args), _out(args), adapter=args.adapter, progress=not args.no_progress)
    return 0


def _print_predictions(out: list[dict], as_json: bool) -> None:
    import json

    if as_json:
        print(json.dumps(out, indent=2))
        return
    for item in out:
        print(item["file"] + ": " + ", ".join(f"{k} {v:.3f}" for k, v in item["top"].items()))
        if item.get("warning"):
            print(f"  note: {item['warning']}")
        for w in item.get("timeline", []):
            print(f"  {w['start']:7.1f}-{w['end']:7.1f} s  {w['label']} {w['probability']:.3f}")
        if "csv" in item:
            print(f"  timeline written to {item['csv']}")


def _item(path: str, labels: list[str], mean, windows, window_probabilities, top_k: int, csv: bool = False) -> dict:
    order = sorted(range(len(labels)), key=lambda i: -mean[i])[:top_k]
    item = {"file": path, "label": labels[order[0]], "top": {labels[i]: float(mean[i]) for i in order}}
    timeline = [{"start": round(float(a), 3), "end": round(float(b), 3), "label": labels[int(p.argmax())],
                 "probability": float(p.max()), "probabilities": {k: float(v) for k, v in zip(labels, p)}}
                for (a, b), p in zip(windows, window_probabilities)]
    if len(windows) > 1:  # long audio: the emotion timeline, one entry per speech segment (or window)
        item["timeline"] = timeline
    if csv:
        item["csv"] = str(_write_timeline_csv(Path(path), labels, timeline))
    return item


def _write_timeline_csv(recording: Path, labels: list[str], timeline: list[dict]) -> Path:
    """``talk.wav`` -> ``talk.emotions.csv`` beside it: start, end, label and every class's probability."""
    from .io import atomic_write_text

    rows = ["start,end,label," + ",".join(labels)]
    rows += [f"{t['start']:.3f},{t['end']:.3f},{t['label']}," + ",".join(f"{t['probabilities'][k]:.4f}" for k in labels)
             for t in timeline]
    out = recording.with_suffix(".emotions.csv")
    try:
        atomic_write_text(out, "\n".join(rows) + "\n")
    except OSError as e:
        raise SeraError(f"{out}: cannot write the timeline here ({e.strerror})") from None
    return out


def cmd_predict_onnx(args: argparse.Namespace) -> int:
    """The ONNX route: onnxruntime and numpy only (no torch, no transformers are imported)."""
    from .onnx_predict import OnnxPredictor

    if args.checkpoint or args.same_speaker or args.encoder:
        raise SeraError("--onnx runs an exported folder on its own: leave out --checkpoint, --encoder and --same-speaker")
    predictor = OnnxPredictor(args.onnx)
    out = []
    for path in args.files:
        pred = predictor.predict_file(path)
        item = _item(path, predictor.labels, pred.probabilities, pred.windows, pred.window_probabilities, args.top_k,
                     args.csv)
        out.append({**item, "flags": pred.flags, "domain_distance": pred.domain_distance, "warning": pred.warning()})
    _print_predictions(out, args.json)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    if args.onnx:
        return cmd_predict_onnx(args)
    if not args.checkpoint:
        raise SeraError("give --checkpoint DIR|USER/NAME (or --onnx DIR for an exported model)")
    from .predict import Predictor

    from .config import VadConfig

    vad = VadConfig(enabled=False) if args.no_vad else None  # None: the checkpoint's own settings
    predictor = Predictor(args.checkpoint, encoder=args.encoder, device=args.device, vad=vad)
    if args.same_speaker and not predictor.can_enrol:
        print("note: this checkpoint holds no training-speaker statistics (an older sera); --same-speaker changes "
              "nothing (retrain it for the speaker route)", file=sys.stderr)
    elif args.same_speaker:
        print(f"note: {predictor.protocol_note(same_speaker=True)}", file=sys.stderr)
    if predictor.speaker_normalised and not args.same_speaker:
        print("note: this checkpoint expects speaker-normalised features; each clip is standardised with "
              "reference statistics. Several clips of one speaker with --same-speaker do better.", file=sys.stderr)
    out = []
    for path, pred in zip(args.files, predictor.predict_files(args.files, args.same_speaker)):
        mean = [pred.probabilities[label] for label in pred.labels]
        item = _item(path, pred.labels, mean, pred.windows, pred.window_probabilities, args.top_k, args.csv)
        out.append({**item, "flags": pred.flags, "domain_distance": pred.domain_distance, "warning": pred.warning()})
    _print_predictions(out, args.json)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_onnx

    out = export_onnx(args.checkpoint, args.onnx, encoder=args.encoder)
    print(f"ONNX model: {out / 'model.onnx'}; run it with `sera predict --onnx {out} FILE...`")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .data import load_corpus, make_folds

    cfg = config_from_args(args)
    corpus = load_corpus(cfg.data)
    print(corpus.summary())
    for fold in make_folds(corpus, cfg.data, cfg.seed):
        tag = "" if fold.speaker_independent else "  [speaker-dependent]"
        print(f"  fold {fold.name}: {len(fold.test_ids)} test utterances{tag}")
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    from .augment import parse_copies
    from .cache import extract, process_share
    from .data import load_corpus
    from .encoders import Encoder
    from .pipeline import feature_cache

    cfg = config_from_args(args).updated(parse_sets(args.set))
    corpus = load_corpus(cfg.data)
    main_process = process_share()[0] == 0  # under torchrun, rank 0 speaks for all
    if main_process:
        print(corpus.summary(), file=sys.stderr)
    encoder = Encoder(cfg.encoder)
    parts = [(None, corpus.utterances)]  # the clips themselves, then each copy (of a mixed set, the clips it picks)
    parts += [part for copy_set in parse_copies(args.augment or "") for part in copy_set.split(corpus.utterances)]
    for augment, utterances in parts:
        cache = feature_cache(cfg, encoder.key, augment)
        report = extract(utterances, encoder, cache, cfg.audio, progress=not args.no_progress)
        if main_process:
            print(f"{augment.name} copies: " if augment else "", end="")
            print(report.summary())
            print(f"cache: {cache.dir} ({cache.size_bytes() / 1e9:.2f} GB)")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from .config import DataConfig
    from .data import CORPORA
    from .data.download import download

    root = args.data or DataConfig().root
    if args.checksum and len(args.corpora) > 1:
        raise SeraError("--checksum pins one archive: download one corpus at a time with it")
    for name in args.corpora:
        folder = download(name, root, checksum=args.checksum, progress=not args.no_progress)
        record = CORPORA[name]
        print(f"{name}: {folder} ({record.source.title}); licence: {record.licence}; cite: {record.citation}")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from .hub import push

    url = push(args.checkpoint, args.repo, private=args.private, token=args.token, endpoint=args.endpoint)
    print(f"pushed {args.checkpoint} with its model card: {url}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sera",
        description="Speech emotion recognition on a frozen speech encoder with a small trained adapter.",
        epilog="Data and models: SERA_DATA (corpora root), SERA_ENCODER (hub id or folder), SERA_CACHE "
        "(feature cache). Flags override them. Run `sera COMMAND --help` for a command's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, fn: Callable[[argparse.Namespace], int], help: str, corpus: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        _common(p, corpus)
        p.set_defaults(fn=fn)
        return p

    def bare(name: str, fn: Callable[[argparse.Namespace], int], help: str, description: str = "") -> argparse.ArgumentParser:
        """A command without the corpus and encoder flags: only --debug."""
        p = sub.add_parser(name, help=help, description=description or help)
        p.add_argument("--debug", action="store_true", help="show full tracebacks")
        p.set_defaults(fn=fn)
        return p

    add("info", cmd_info, "show a corpus: utterances, speakers, classes and its speaker-independent folds")
    p = add("extract", cmd_extract, "cache every layer's encoder features for a corpus (resumes if interrupted)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--augment", metavar="NAMES", help="also cache augmented copies of every clip, each its own cache "
                   "entry (sera/augment.py): speed0.9,speed1.1,pitch,noise,room,telephone,laptop; a|b: one copy of "
                   "each clip, a or b as the clip's id picks")
    _set_flag(p, "a config field, e.g. --set encoder.layers=::2 --set model.frame_stride=2 (what the cache keeps)")
    p = add("train", cmd_train, "cross-validate both stages on a corpus's speaker-independent folds, then save "
            "a final checkpoint trained on every speaker")
    _training_flags(p)
    p.add_argument("--no-final", action="store_true", help="skip the final checkpoint")
    p = add("evaluate", cmd_train, "cross-validate both stages on a corpus's folds (results only, no checkpoint)")
    _training_flags(p)
    p = add("pretrain", cmd_pretrain, "stage 1 only: train the teacher-student adapter on a corpus's audio, "
            "no labels used (add other corpora with --set train.pretrain_corpora=emodb)")
    _training_flags(p)
    p = add("finetune", cmd_finetune, "stage 2 only: adapter (from sera pretrain, or fresh) + SAP + classifier "
            "on a corpus's labels, early-stopped on held-out speakers")
    _training_flags(p)
    p.add_argument("--adapter", metavar="DIR", help="stage 1 result (OUT/adapter of sera pretrain)")
    p = bare("download", cmd_download, "fetch public corpora (ravdess, emodb) from their publishers into the data "
             "folder, checked and unpacked atomically", "fetch public corpora (ravdess, emodb) from their publishers "
             "into the data folder; each archive's size and checksum are checked before anything is unpacked")
    p.add_argument("corpora", nargs="+", choices=["ravdess", "emodb"], metavar="CORPUS", help="ravdess, emodb")
    p.add_argument("--data", metavar="DIR", help="where the corpora go (default: $SERA_DATA or ./data)")
    p.add_argument("--checksum", metavar="ALG:HEX", help="pin the archive, e.g. sha256:... (default: the publisher's "
                   "stated checksum where it publishes one)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p = bare("export", cmd_export, "export a checkpoint and its encoder as one ONNX graph (input features to class "
             "probabilities, any length)", "export a checkpoint and its encoder as one ONNX graph, for `sera predict "
             "--onnx` (onnxruntime, no torch)")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoint folder or Hub repository")
    p.add_argument("--onnx", required=True, metavar="OUT", help="the folder to write")
    p.add_argument("--encoder", metavar="ID|PATH", help="the checkpoint's encoder in another folder or as a hub id")
    p = bare("push", cmd_push, "upload a checkpoint to the Hugging Face Hub as a model repository, with a generated "
             "model card", "upload a checkpoint folder (config.json, model.safetensors) and a model card (README.md, "
             "written into the folder) to the Hub")
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.add_argument("repo", metavar="USER/NAME")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--token", help="a Hub token with write access (default: the one `hf auth login` saved)")
    p.add_argument("--endpoint", help="another Hub server (default: $HF_ENDPOINT or huggingface.co)")
    p = bare("predict", cmd_predict, "emotion probabilities for audio files from a checkpoint")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--checkpoint", metavar="DIR|USER/NAME", help="a checkpoint folder or a Hub repository")
    p.add_argument("--onnx", metavar="DIR", help="instead of --checkpoint: a `sera export --onnx` folder, run with "
                   "onnxruntime (starts fast: no torch, no transformers)")
    p.add_argument("--encoder", metavar="ID|PATH", help="the checkpoint's encoder in another folder or as a hub id "
                   "(the same weights: checked by content)")
    p.add_argument("--device", default="auto", help="where the encoder and model run: auto (CUDA when present), "
                   "cpu, cuda, cuda:1, ...")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--same-speaker", action="store_true",
                   help="the files are one speaker: use their pooled statistics (pays with about 16 or more clips of "
                   "varied emotion; with 4 or fewer it costs accuracy)")
    p.add_argument("--no-vad", action="store_true", help="score fixed windows, speech or not (laughter, crying, "
                   "singing); by default long audio is cut at its pauses and a recording without speech is refused")
    p.add_argument("--csv", action="store_true", help="also write each recording's timeline (start, end, label, "
                   "probabilities) beside it as NAME.emotions.csv")
    p.add_argument("--json", action="store_true", help="JSON output")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except SeraError as e:
        if args.debug:
            raise
        print(f"sera {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into head and the like
        return 0
    except KeyboardInterrupt:
        print(f"sera {args.command}: interrupted; run it again to resume", file=sys.stderr)
        return 130
    except Exception as e:  # a bug or an input sera does not check yet: still one line, the trace on request
        if args.debug:
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(f"sera {args.command}: unexpected error: {type(e).__name__}: {first} "
              "(run again with --debug for the full traceback)", file=sys.stderr)
        return 1
    finally:
        _leave_process_group()


def _leave_process_group() -> None:
    """Under torchrun, take the process group down before exit: left to the interpreter's teardown, gloo's
    threads can abort a rank whose work is done ("terminate called without an active exception")."""
    dist = sys.modules.get("torch.distributed")  # never imported: no group to leave
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
