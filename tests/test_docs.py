"""The front door and the docs site: the README stays short, the site builds with every link
checked (mkdocs --strict), and the project speaks of itself by commits and dates."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_is_a_front_door_that_links_into_the_docs():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    for line in ("make reproduce", "make test"):
        assert line in text
    linked = set(re.findall(r"\]\((docs/[\w-]+\.md)", text))
    assert len(linked) >= 8 and all((ROOT / p).is_file() for p in linked), linked


def test_the_docs_site_builds_strictly_with_every_page_in_its_navigation(tmp_path):
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    pages = {p.stem for p in (ROOT / "docs").glob("*.md")}
    built = {p.parent.name for p in (tmp_path / "site").glob("*/index.html")} | {"index"}
    assert pages <= built, pages - built


def test_the_project_names_commits_and_dates_not_how_its_work_was_organised():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    pattern = re.compile(r"\b(sessions? \d+|this session|next session|earlier sessions|session's)\b", re.I)
    here = str(Path(__file__).relative_to(ROOT))  # its own pattern names the words
    hits = [f"{f}: {m.group(0)}" for f in files if f.endswith((".py", ".md", ".ipynb", ".toml", ".yml", "Makefile")) and f != here
            for m in [pattern.search((ROOT / f).read_text(errors="ignore"))] if m]
    assert not hits, hits


def test_no_figure_is_left_as_a_placeholder():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    left = [f"{p.name}: {m}" for p in pages for m in re.findall(r"\b[A-Z]+_(?:NOTES|SUMMARY|LINE|CLIP|HEAD)\b",
                                                                p.read_text()) if m != "PROTOCOL_NOTES"]
    assert not left, left
