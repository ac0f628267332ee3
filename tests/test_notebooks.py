"""Every notebook runs top to bottom in quick mode (its parameters cell with QUICK = True) and
stays small enough to commit with its outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_is_one_notebook_per_component():
    names = [p.stem for p in NOTEBOOKS]
    assert names == ["01_data_and_encoder", "02_wap", "03_self_distillation", "04_local_attributes", "05_sap",
                     "06_reproduce"]
    for p in NOTEBOOKS:
        assert p.stat().st_size < 3_000_000, f"{p.name} is over 3 MB"
        book = nbformat.read(p, as_version=4)
        params = [c for c in book.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(params) == 1 and "QUICK = False" in params[0].source, p.name
        code = "\n".join(c.source for c in book.cells if c.cell_type == "code")
        assert "from sera" in code and "class " not in code  # logic lives in sera, not here


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_quick_mode(path, data_root, whisper_path, feature_cache, monkeypatch):
    from nbclient import NotebookClient

    book = nbformat.read(path, as_version=4)
    for cell in book.cells:
        if "parameters" in cell.metadata.get("tags", []):
            cell.source += "\nQUICK = True  # injected by the test"
    for name, value in {"SERA_DATA": data_root, "SERA_ENCODER": whisper_path, "SERA_CACHE": feature_cache}.items():
        monkeypatch.setenv(name, str(value))  # the kernel inherits them: the same settings as the CLI
    NotebookClient(book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    images = sum(1 for c in book.cells if c.cell_type == "code" for o in c.get("outputs", [])
                 if "image/png" in o.get("data", {}))
    assert images >= 1, f"{path.name} drew no picture"
