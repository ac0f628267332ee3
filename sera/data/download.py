"""Fetch RAVDESS's speech part from its public Zenodo record (for Colab and fresh machines).

The archive unpacks into ``ROOT/ravdess/Actor_01 … Actor_24`` (the layout sera's reader expects).
The folder appears only once the whole archive is unpacked, so an interrupted download never
leaves a half corpus behind.
"""

from __future__ import annotations

import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import CorpusError

RAVDESS_URL = "https://zenodo.org/records/1188976/files/Audio_Speech_Actors_01-24.zip?download=1"


def download_ravdess(root: str | Path, url: str = RAVDESS_URL, progress: bool = True) -> Path:
    """``root`` with ``ravdess/`` filled (nothing is fetched when it is already there); returns ``root``."""
    root = Path(root)
    target = root / "ravdess"
    if target.is_dir() and any(target.glob("Actor_*")):
        return root
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".ravdess-") as tmp:
        archive = Path(tmp) / "ravdess.zip"
        try:
            with urllib.request.urlopen(url) as response, open(archive, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc="RAVDESS", disable=not progress) as bar:
                    while chunk := response.read(1 << 20):
                        out.write(chunk)
                        bar.update(len(chunk))
            with zipfile.ZipFile(archive) as z:
                z.extractall(Path(tmp) / "ravdess")
        except (OSError, zipfile.BadZipFile) as e:
            raise CorpusError(f"{url}: could not download and unpack RAVDESS ({e}); download "
                              f"Audio_Speech_Actors_01-24.zip by hand and unpack it into {target}") from None
        unpacked = Path(tmp) / "ravdess"
        actors = sorted(unpacked.rglob("Actor_*"))
        if not actors:
            raise CorpusError(f"{url}: the archive holds no Actor_* folders")
        parent = actors[0].parent  # some copies of the archive nest the actors one folder down
        shutil.move(str(parent), str(target))
    return root
