"""A checkpoint is a Hub model repository: its card, loading by id from the Hugging Face cache, and
`sera push` against a stand-in of the Hub's API on 127.0.0.1."""

import base64
import gzip
import http.server
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import ModelCard

from conftest import tone
from sera.cli import main
from sera.config import VadConfig
from sera.errors import SeraError
from sera.hub import model_card
from sera.predict import Predictor

CV = {p: {"ua": {"mean": ua, "std": 0.01}, "wa": {"mean": ua, "std": 0.01}, "f1": {"mean": ua, "std": 0.01},
          "by_corpus": {"ravdess": {k: {"mean": ua - 0.02, "std": 0.0} for k in ("ua", "wa", "f1")},
                        "emodb": {k: {"mean": ua + 0.1, "std": 0.0} for k in ("ua", "wa", "f1")}}}
      for p, ua in (("clip", 0.701), ("speaker", 0.802))}


@pytest.fixture
def checkpoint(tmp_path, demo_checkpoint) -> Path:
    """The demo checkpoint, as if trained on two corpora and cross-validated."""
    path = Path(shutil.copytree(demo_checkpoint, tmp_path / "checkpoint"))
    meta = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**meta, "corpora": ["ravdess", "emodb"], "cv": CV}))
    return path


def test_model_card_metadata_and_figures(checkpoint):
    text = model_card(checkpoint)
    data = ModelCard(text).data
    assert data.library_name == "sera" and data.pipeline_tag == "audio-classification"
    assert data.license == "cc-by-nc-sa-4.0" and data.datasets == ["ravdess", "emodb"]  # RAVDESS's terms bind
    assert "base_model" not in data.to_dict()  # a local encoder folder is no Hub model
    assert "angry, happy, neutral, sad" in text and "non-commercial" in text
    rows = [line for line in text.splitlines() if line.startswith("| clip") or line.startswith("| speaker")]
    assert rows[0] == "| clip | all | 70.1 ± 1.0 | 70.1 ± 1.0 | 70.1 ± 1.0 |"  # the clip protocol leads
    assert "| clip | emodb | 80.1 ± 0.0 |" in text and "| speaker | all | 80.2 ± 1.0 |" in text


class StandInHub(http.server.BaseHTTPRequestHandler):
    """The calls `sera push` makes: create the repository, check the card's YAML, ask how to upload, commit."""

    received: dict[str, bytes] = {}
    created: list[dict] = []

    def log_message(self, *args) -> None:
        pass

    def _reply(self, body: dict, code: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        if self.path == "/api/repos/create":
            spec = json.loads(body)
            StandInHub.created.append(spec)
            return self._reply({"url": f"{base}/{spec.get('organization')}/{spec['name']}"})
        if self.path == "/api/validate-yaml":
            return self._reply({"errors": [], "warnings": []})
        if "/preupload/" in self.path:
            return self._reply({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                          for f in json.loads(body)["files"]]})
        if "/commit/" in self.path:
            for line in body.decode().splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    StandInHub.received[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            return self._reply({"commitUrl": f"{base}/me/ser/commit/{'a' * 40}", "commitOid": "a" * 40,
                                "pullRequestUrl": None})
        self._reply({"error": f"the stand-in does not serve {self.path}"}, 404)


def _hub_cache(cache: Path, repo: str, files: dict[str, bytes]) -> None:
    """The Hugging Face cache's layout, as a download would leave it: blobs, a snapshot, refs/main."""
    commit = "b" * 40
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    for name, data in files.items():
        (root / "snapshots" / commit).mkdir(parents=True, exist_ok=True)
        (root / "snapshots" / commit / name).write_bytes(data)


def test_push_then_load_by_repository_id(checkpoint, tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", False)  # the tests run offline; the stand-in is on this machine
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StandInHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        assert main(["push", str(checkpoint), "me/ser", "--endpoint", endpoint, "--token", "hf_test", "--private"]) == 0
    finally:
        server.shutdown()
    assert "pushed" in capsys.readouterr().out and StandInHub.created[-1]["name"] == "ser"
    assert StandInHub.created[-1].get("visibility", "private" if StandInHub.created[-1].get("private") else "") == "private"
    got = StandInHub.received
    assert sorted(got) == ["README.md", "config.json", "model.safetensors"]
    assert got["model.safetensors"] == (checkpoint / "model.safetensors").read_bytes()
    assert got["README.md"].decode() == model_card(checkpoint)

    # What a user of the repository gets: the files in the Hugging Face cache, loaded by id, offline.
    _hub_cache(tmp_path / "hf", "me/ser", got)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    wave, vad_off = tone(2.0, freq=300.0), VadConfig(enabled=False)  # a tone holds no speech: score it anyway
    by_id = Predictor.from_pretrained("me/ser", vad=vad_off).predict_wave(wave)
    local = Predictor(checkpoint, vad=vad_off).predict_wave(wave)
    assert by_id.labels == local.labels
    np.testing.assert_allclose(by_id.window_probabilities, local.window_probabilities, atol=1e-6)
    with pytest.raises(SeraError, match=r"Without Hub access, download the repository .*\(--checkpoint DIR"):
        Predictor.from_pretrained("nobody/nothing")
