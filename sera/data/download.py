"""Fetch the public corpora from their publishers (for Colab and fresh machines): ``sera download``.

Each archive is checked before anything is unpacked: its size against what the server and the
publisher's record state, its checksum against the publisher's (RAVDESS: Zenodo's record states an
MD5) or one the user pins, and every member's CRC. The corpus folder appears only once the whole
archive is unpacked, so an interrupted or corrupt download leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path
from urllib.parse import urlparse

from tqdm.auto import tqdm

from ..errors import CorpusError
from .corpora import CORPORA


SOURCES = {name: record.source for name, record in CORPORA.items() if record.source is not None}
RAVDESS_URL = SOURCES["ravdess"].url


def published_checksum(record_url: str, archive_url: str) -> tuple[int | None, str | None]:
    """(size, "algorithm:hex") of the archive as its publisher's record states them (Zenodo's file list)."""
    name = Path(urlparse(archive_url).path).name
    try:
        with urllib.request.urlopen(record_url, timeout=30) as r:
            files = json.loads(r.read()).get("files", [])
    except (OSError, ValueError) as e:
        raise CorpusError(f"{record_url}: could not read the publisher's record of {name} ({e})") from None
    entries = files.get("entries", {}).values() if isinstance(files, dict) else files  # both Zenodo APIs
    for f in entries:
        if f.get("key") == name:
            return f.get("size"), f.get("checksum")
    raise CorpusError(f"{record_url}: the record lists no file {name}")


def _fetch(url: str, out: Path, title: str, progress: bool, algorithm: str) -> tuple[int, int | None, str]:
    """Stream ``url`` into ``out``: (bytes written, bytes the server announced, hex digest)."""
    digest = hashlib.new(algorithm)
    written = 0
    with urllib.request.urlopen(url, timeout=60) as response, open(out, "wb") as f:
        announced = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=announced, unit="B", unit_scale=True, desc=title, disable=not progress) as bar:
            while chunk := response.read(1 << 20):
                f.write(chunk)
                digest.update(chunk)
                written += len(chunk)
                bar.update(len(chunk))
    return written, announced, digest.hexdigest()


def download(corpus: str, root: str | Path, url: str | None = None, record: str | None = None,
             checksum: str | None = None, progress: bool = True) -> Path:
    """``root/<corpus>`` filled from the publisher (nothing is fetched when it is already complete).

    ``checksum`` ("sha256:hex" or "md5:hex") pins the archive; otherwise the publisher's record is
    asked where there is one. Returns the corpus folder."""
    if corpus not in SOURCES:
        raise CorpusError(f"no download for {corpus!r}: sera downloads {', '.join(SOURCES)} (IEMOCAP and "
                          "CREMA-D need their publishers' agreement; unpack them below the data folder yourself)")
    src = SOURCES[corpus]
    url, record = url or src.url, src.record if record is None else record
    target = Path(root) / corpus
    if target.is_dir() and any(target.glob(src.marker)):
        return target
    size = None
    if checksum is None and record:
        size, checksum = published_checksum(record, url)
    algorithm, _, expected = (checksum or "sha256:").partition(":")
    if algorithm not in hashlib.algorithms_available:
        raise CorpusError(f"checksum {checksum!r}: unknown algorithm {algorithm!r} (use sha256:HEX or md5:HEX)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{corpus}-") as tmp:
        archive = Path(tmp) / "archive.zip"
        try:
            written, announced, got = _fetch(url, archive, src.title, progress, algorithm)
        except (OSError, http.client.HTTPException) as e:  # IncompleteRead: the connection closed early
            raise CorpusError(f"{url}: could not download {corpus} ({type(e).__name__}: {e}); download it by hand and unpack it into "
                              f"{target}") from None
        for what, want in (("the server announced", announced), ("the publisher's record states", size)):
            if want is not None and written != want:
                raise CorpusError(f"{url}: the download stopped short or is not the published archive: {written} "
                                  f"bytes, {what} {want}; nothing was kept, run it again")
        if expected and got != expected.lower():
            raise CorpusError(f"{url}: {algorithm} checksum {got} is not the expected {expected}: a corrupt or "
                              "changed archive; nothing was kept")
        unpacked = Path(tmp) / corpus
        try:
            with zipfile.ZipFile(archive) as z:
                bad = z.testzip()
                if bad is not None:
                    raise CorpusError(f"{url}: {bad} in the archive fails its CRC check; nothing was kept")
                z.extractall(unpacked)
        except (zipfile.BadZipFile, OSError) as e:
            raise CorpusError(f"{url}: not a readable zip archive ({e}); nothing was kept") from None
        found = sorted(unpacked.rglob(src.marker))
        if not found:
            raise CorpusError(f"{url}: the archive holds no {src.marker} folder: not the {corpus} archive")
        shutil.move(str(found[0].parent), str(target))  # some copies nest the corpus one folder down
    return target


def download_ravdess(root: str | Path, url: str = RAVDESS_URL, progress: bool = True) -> Path:
    """``root`` with ``ravdess/`` filled (the notebook's Colab cell); returns ``root``."""
    download("ravdess", root, url=url, record="" if url != RAVDESS_URL else None, progress=progress)
    return Path(root)
