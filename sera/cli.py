"""The ``sera`` command: a thin layer that turns flags into a SeraConfig and calls the library."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from .config import SeraConfig
from .errors import SeraError


def _common(p: argparse.ArgumentParser, corpus: bool = True) -> None:
    p.add_argument("--config", metavar="JSON", help="a saved SeraConfig to start from (flags override it)")
    p.add_argument("--data", metavar="DIR", help="folder holding the corpora (default: $SERA_DATA or ./data)")
    p.add_argument("--encoder", metavar="ID|PATH", help="hub id or local model folder (default: $SERA_ENCODER "
                   "or openai/whisper-tiny.en)")
    p.add_argument("--cache", metavar="DIR", help="feature cache folder (default: $SERA_CACHE or ~/.cache/sera)")
    if corpus:
        p.add_argument("--corpus", help="ravdess, emodb, iemocap, crema-d, a manifest .csv (path,label,speaker"
                       "[,split]) or a folder with one subfolder per label (default: ravdess)")
        p.add_argument("--classes", help='class map, e.g. "neutral,happy,sad,angry" or "hap=happy,exc=happy,..."')
        p.add_argument("--speaker-dependent", action="store_true",
                       help="random utterance folds instead of speaker-independent ones (flagged in every result)")
        p.add_argument("--allow-outside-root", action="store_true", help="let manifest paths leave the manifest's folder")
    p.add_argument("--whisper-padded", action="store_true", help="pad Whisper input to 30 s as transformers does")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")


def config_from_args(args: argparse.Namespace) -> SeraConfig:
    cfg = SeraConfig.load(args.config) if getattr(args, "config", None) else SeraConfig()
    for flag, (section, name) in {
        "data": ("data", "root"), "corpus": ("data", "corpus"), "classes": ("data", "classes"),
        "encoder": ("encoder", "name"), "cache": (None, "cache_dir"), "seed": (None, "seed"),
    }.items():
        value = getattr(args, flag, None)
        if value is not None:
            setattr(getattr(cfg, section) if section else cfg, name, value)
    for flag, (section, name) in {
        "speaker_dependent": ("data", "speaker_dependent"), "allow_outside_root": ("data", "allow_outside_root"),
        "whisper_padded": ("encoder", "whisper_padded"),
    }.items():
        if getattr(args, flag, False):
            setattr(getattr(cfg, section), name, True)
    return cfg


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
    from .cache import FeatureCache, extract
    from .data import load_corpus
    from .encoders import Encoder

    cfg = config_from_args(args)
    corpus = load_corpus(cfg.data)
    print(corpus.summary(), file=sys.stderr)
    encoder = Encoder(cfg.encoder)
    cache = FeatureCache(cfg.cache_dir, encoder.key)
    report = extract(corpus.utterances, encoder, cache, cfg.audio, progress=not args.no_progress)
    print(report.summary())
    print(f"cache: {cache.dir} ({cache.size_bytes() / 1e9:.2f} GB)")
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

    add("info", cmd_info, "show a corpus: utterances, speakers, classes and its speaker-independent folds")
    p = add("extract", cmd_extract, "cache every layer's encoder features for a corpus (resumes if interrupted)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
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
    except KeyboardInterrupt:
        print(f"sera {args.command}: interrupted; run it again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
