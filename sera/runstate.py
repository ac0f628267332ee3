"""A run folder's state (``OUT/state``): what a rerun may resume, and what it must start over.

A run resumes only with the code and the settings it was started with; a finished run made by
other code or settings is replaced, so that ``make reproduce`` after an update simply runs again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .config import SeraConfig
from .errors import SeraError
from .io import atomic_write_text
from .provenance import code_version


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


def check_state(state: Path, cfg: SeraConfig) -> None:
    """A run folder resumes only with the settings and the code it was started with (more or fewer
    seeds is fine: each seed's runs are kept apart)."""
    code = state / "code.json"
    if code.is_file() and (then := json.loads(code.read_text()))["source"] != code_version()["source"]:
        raise SeraError(f"{state.parent}: holds an unfinished run made by other code (commit {then.get('commit')}"
                        f"{', uncommitted changes' if then.get('dirty') else ''}); use another --out, or --fresh "
                        "to start over")
    if not code.is_file():
        atomic_write_text(code, json.dumps(code_version(), indent=2))
    path = state / "config.json"
    now = json.loads(json.dumps(cfg.to_dict()))
    now["train"].pop("seeds")
    now["train"].pop("jobs")  # how many folds run at once does not change a fold's result
    now.pop("demo")  # the web demo's settings do not touch training
    now["data"].pop("protocol")  # both protocols are always scored; the setting only picks the headline
    if path.is_file():
        a, b = _flatten(json.loads(path.read_text())), _flatten(now)
        diff = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        if diff:
            raise SeraError(f"{state.parent}: holds an unfinished run with other settings ({', '.join(diff[:5])}); "
                            "use another --out, or --fresh to start over")
    else:
        atomic_write_text(path, json.dumps(now, indent=2))


FINISHED = "finished"  # a state folder's marker: the run ended (results and, for train, its checkpoint written)


def forget_finished(state: Path, cfg: SeraConfig) -> bool:
    """Remove ``state`` if it holds a finished run made by other code or settings, so that rerunning a
    command (``make reproduce`` after an update) starts over instead of refusing; an unfinished run
    is kept and still refused, since it may be resumed. True if it was removed."""
    if not (state / FINISHED).is_file():
        return False
    try:
        check_state(state, cfg)
        return False
    except SeraError:
        shutil.rmtree(state)
        return True
