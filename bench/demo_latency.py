"""How fast the web demo answers: a 4 s clip sent over HTTP (gradio_client) to app.py on this
machine, end to end (upload, encoder, adapter, the plots), and the model part alone.

    python bench/demo_latency.py --checkpoint runs/ravdess+emodb/checkpoint [--requests 20] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import save  # noqa: E402

from sera.audio import load_audio  # noqa: E402
from sera.config import SeraConfig  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--clip", default=None, help="a ~4 s clip (default: a RAVDESS clip from SERA_DATA)")
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="3 requests (CI)")
    args = ap.parse_args()
    args.requests = 3 if args.quick else args.requests
    clip = args.clip or str(Path(SeraConfig().data.root) / "ravdess/Actor_20/03-01-05-02-01-01-20.flac")
    import app  # the repository root is on sys.path (above)

    cfg = app.config_from_argv(["--checkpoint", args.checkpoint])
    t0 = time.perf_counter()
    demo = app.build_demo(cfg)
    startup = time.perf_counter() - t0
    _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)

    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    client.predict(handle_file(clip), api_name="/classify")  # warm-up
    http = []
    for _ in range(args.requests):
        t = time.perf_counter()
        client.predict(handle_file(clip), api_name="/classify")
        http.append(time.perf_counter() - t)
    demo.close()

    from sera.predict import Predictor

    predictor = Predictor(args.checkpoint)
    wave = load_audio(clip)
    predictor.predict_wave(wave)
    model = []
    for _ in range(args.requests):
        t = time.perf_counter()
        predictor.predict_wave(wave)
        model.append(time.perf_counter() - t)
    result = {"clip": clip, "clip_seconds": wave.size / 16_000, "requests": args.requests,
              "startup_seconds": startup, "http_median_seconds": statistics.median(http),
              "http_max_seconds": max(http), "predict_median_seconds": statistics.median(model)}
    print(result)
    print(save("demo_latency-quick" if args.quick else "demo_latency", result))


if __name__ == "__main__":
    main()
