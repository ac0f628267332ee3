"""Which code made a result: the git commit (for people), whether the tree was dirty, and a hash of
sera's own source (for machines: resuming refuses state that other code made, even uncommitted code).
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


@functools.lru_cache(maxsize=1)
def code_version() -> dict[str, str | bool | None]:
    """``{"source": sha256 of sera/**/*.py, "commit": HEAD or None, "dirty": bool or None}``."""
    h = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        h.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    commit = dirty = None
    try:
        run = lambda *a: subprocess.run(["git", *a], cwd=PACKAGE, capture_output=True, text=True,  # noqa: E731
                                        timeout=10, check=True).stdout
        commit = run("rev-parse", "HEAD").strip() or None
        dirty = bool(run("status", "--porcelain", "--untracked-files=no").strip())
    except (OSError, subprocess.SubprocessError):  # not a git checkout (an installed wheel), or no git
        pass
    return {"source": h.hexdigest()[:16], "commit": commit, "dirty": dirty}
