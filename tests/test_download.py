"""`sera download` against a stand-in publisher on 127.0.0.1: archives the tests build, a Zenodo-like
record stating size and checksum, a server that stops short."""

import dataclasses
import hashlib
import http.server
import json
import threading
import zipfile
from pathlib import Path

import pytest

from conftest import write_audio
from sera.cli import main
from sera.config import DataConfig
from sera.data import load_corpus
from sera.data import download as dl
from sera.errors import CorpusError


class Publisher(http.server.SimpleHTTPRequestHandler):
    """Serves its folder; ``/short/NAME`` announces NAME's full length and sends half of it."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/short/"):
            body = (Path(self.directory) / self.path.removeprefix("/short/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def publisher(tmp_path):
    """(folder served, base URL) of an HTTP server on 127.0.0.1."""
    folder = tmp_path / "site"
    folder.mkdir()
    handler = lambda *a, **kw: Publisher(*a, directory=str(folder), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _zip(path: Path, files: dict[str, Path]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, f in files.items():
            z.write(f, name)
    return path


def _ravdess_archive(tmp_path: Path, site: Path) -> Path:
    files = {}
    for actor in (1, 2):
        for emo in (1, 5):
            name = f"Actor_{actor:02d}/03-01-{emo:02d}-01-01-01-{actor:02d}.wav"
            files[name] = write_audio(tmp_path / "src" / name, 0.5, seed=actor * 10 + emo)
    return _zip(site / "Audio_Speech_Actors_01-24.zip", files)


def _record(site: Path, archive: Path, checksum: str | None = None) -> None:
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    entry = {"key": archive.name, "size": archive.stat().st_size, "checksum": checksum or f"md5:{md5}"}
    (site / "record.json").write_text(json.dumps({"files": [entry]}))


def _serve(monkeypatch, corpus: str, url: str, record: str) -> None:
    monkeypatch.setitem(dl.SOURCES, corpus, dataclasses.replace(dl.SOURCES[corpus], url=url, record=record))


def _nothing_left(data: Path) -> bool:
    return not data.exists() or not any(data.iterdir())


def test_sera_download_checks_the_published_checksum_and_unpacks(tmp_path, publisher, monkeypatch, capsys):
    site, base = publisher
    archive = _ravdess_archive(tmp_path, site)
    _record(site, archive)
    _serve(monkeypatch, "ravdess", f"{base}/{archive.name}", f"{base}/record.json")
    data = tmp_path / "data"
    assert main(["download", "ravdess", "--data", str(data), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert str(data / "ravdess") in out and "CC BY-NC-SA 4.0" in out
    corpus = load_corpus(DataConfig(root=str(data), corpus="ravdess"))
    assert len(corpus.utterances) == 4 and corpus.speakers == ["01", "02"]
    archive.unlink()  # already there: nothing is fetched
    assert dl.download("ravdess", data, progress=False) == data / "ravdess"
    assert [p.name for p in data.iterdir()] == ["ravdess"]  # no temporary folder left


def test_emodb_download_unpacks_its_wav_folder(tmp_path, publisher, monkeypatch):
    site, base = publisher
    files = {f"wav/{spk}a01{emo}a.wav": write_audio(tmp_path / "src" / f"{spk}{emo}.wav", 0.5, seed=i)
             for i, (spk, emo) in enumerate([("03", "W"), ("03", "T"), ("08", "W"), ("08", "N")])}
    files["erklaerung.txt"] = tmp_path / "readme.txt"
    files["erklaerung.txt"].write_text("EmoDB")
    archive = _zip(site / "download.zip", files)
    _serve(monkeypatch, "emodb", f"{base}/{archive.name}", "")  # EmoDB's publisher states no checksum
    folder = dl.download("emodb", tmp_path / "data", progress=False)
    corpus = load_corpus(DataConfig(root=str(tmp_path / "data"), corpus="emodb"))
    assert folder == tmp_path / "data" / "emodb" and corpus.speakers == ["03", "08"]
    assert sorted(u.label for u in corpus.utterances) == ["anger", "anger", "neutral", "sadness"]


def test_a_wrong_checksum_keeps_nothing(tmp_path, publisher, monkeypatch):
    site, base = publisher
    archive = _ravdess_archive(tmp_path, site)
    _record(site, archive, checksum="md5:" + "0" * 32)
    _serve(monkeypatch, "ravdess", f"{base}/{archive.name}", f"{base}/record.json")
    with pytest.raises(CorpusError, match="md5 checksum .* is not the expected 0000"):
        dl.download("ravdess", tmp_path / "data", progress=False)
    assert _nothing_left(tmp_path / "data")
    pinned = "sha256:" + hashlib.sha256(archive.read_bytes()).hexdigest()  # a pin overrides the record
    assert main(["download", "ravdess", "--data", str(tmp_path / "data"), "--checksum", pinned, "--no-progress"]) == 0


def test_a_truncated_archive_keeps_nothing(tmp_path, publisher, monkeypatch, capsys):
    site, base = publisher
    archive = _ravdess_archive(tmp_path, site)
    _record(site, archive)
    _serve(monkeypatch, "ravdess", f"{base}/short/{archive.name}", f"{base}/record.json")  # connection closes early
    assert main(["download", "ravdess", "--data", str(tmp_path / "data"), "--no-progress"]) == 2
    assert "the download stopped short" in capsys.readouterr().err
    assert _nothing_left(tmp_path / "data")
    (site / "cut.zip").write_bytes(archive.read_bytes()[:-100])  # a complete transfer of a cut file
    _record(site, archive)
    _serve(monkeypatch, "ravdess", f"{base}/cut.zip", "")
    with pytest.raises(CorpusError, match="not a readable zip archive"):
        dl.download("ravdess", tmp_path / "data", progress=False)
    (site / "record.json").write_text(json.dumps({"files": [{"key": "cut.zip", "size": archive.stat().st_size,
                                                              "checksum": "md5:0"}]}))
    _serve(monkeypatch, "ravdess", f"{base}/cut.zip", f"{base}/record.json")
    with pytest.raises(CorpusError, match="the publisher's record states"):
        dl.download("ravdess", tmp_path / "data", progress=False)
    assert _nothing_left(tmp_path / "data")


def test_unknown_corpus_and_unreachable_publisher(tmp_path):
    with pytest.raises(CorpusError, match="IEMOCAP and CREMA-D need their publishers' agreement"):
        dl.download("iemocap", tmp_path)
    with pytest.raises(CorpusError, match="could not read the publisher's record"):
        dl.download("ravdess", tmp_path / "data", record="http://127.0.0.1:9/record.json", progress=False)
    assert _nothing_left(tmp_path / "data")
