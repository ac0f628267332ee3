import zipfile

import pytest

from conftest import write_audio
from sera.data import load_corpus
from sera.config import DataConfig
from sera.data.download import download_ravdess
from sera.errors import CorpusError


def test_download_unpacks_ravdess_where_the_reader_finds_it(tmp_path):
    src = tmp_path / "src"
    for actor in (1, 2):
        for emo in (1, 5):
            write_audio(src / f"Actor_{actor:02d}" / f"03-01-{emo:02d}-01-01-01-{actor:02d}.wav", 0.5, seed=actor * 10 + emo)
    archive = tmp_path / "Audio_Speech_Actors_01-24.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in src.rglob("*.wav"):
            z.write(f, f.relative_to(src))
    root = download_ravdess(tmp_path / "data", url=archive.as_uri(), progress=False)
    corpus = load_corpus(DataConfig(root=str(root), corpus="ravdess"))
    assert len(corpus.utterances) == 4 and corpus.speakers == ["01", "02"]
    assert download_ravdess(root, url="file:///nonexistent.zip") == root  # already there: nothing fetched
    with pytest.raises(CorpusError, match="could not download"):
        download_ravdess(tmp_path / "other", url=(tmp_path / "missing.zip").as_uri())
    assert not (tmp_path / "other" / "ravdess").exists()  # nothing half-written
