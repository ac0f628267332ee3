"""sera's web demo: upload or record a clip, see its emotion and why.

    python app.py [--checkpoint DIR] [--port N]      (or: make demo)

``demo`` is built when this module is imported, so the file also runs unchanged as a Hugging Face
Space: there, set SERA_CHECKPOINT to the model's Hub repository (USER/NAME, pushed with `sera push`),
and SERA_ENCODER if the checkpoint names a local encoder folder. The
model loads once; every request reuses it. All the work is sera's (predict.py, plots.py):
this file only lays out the page.
"""

from __future__ import annotations

import argparse
import sys
import threading
from dataclasses import replace
from pathlib import Path

try:
    import gradio as gr
except ImportError:  # `pip install sera` is the library; the demo is an extra
    raise SystemExit("app.py: the web demo needs gradio: pip install 'sera[demo]' (make install has it)") from None
import matplotlib.pyplot as plt

from sera import plots
from sera.audio import load_audio
from sera.config import SeraConfig
from sera.data import load_corpus
from sera.errors import AudioError, SeraError
from sera.features import Stats
from sera.predict import Predictor

HOW_TO_TRAIN = """No model to serve yet ({problem}).

Make the default one (RAVDESS and EmoDB from `SERA_DATA`; about half an hour on a 2-core CPU) and serve it:

    make demo

or train your own and point the demo at it:

    sera train --corpus ravdess --out runs/ravdess
    python app.py --checkpoint runs/ravdess/checkpoint
"""
PYPLOT = threading.Lock()
ENROL_PAYS = 16  # clips of varied emotion from which a voice's statistics gained in the probe measurement
ENROL_HELP = (
    "Several clips of **one** speaker, ideally in varied emotions: their statistics then replace the training "
    "speakers' for every clip you classify (the speaker route). Measured with the linear probe on whisper-base, "
    "this gains with about {n} or more clips and loses with 4 or fewer (docs/bench-notes.md).")
NOT_ENROLLED = "No voice enrolled: each clip is scored alone (clip protocol)."


def example_clips(cfg: SeraConfig, labels: list[str], corpus: str = "ravdess") -> dict[str, str]:
    """One clip per emotion the model knows, from the data folder when it is there (no corpus
    audio is committed): label -> path."""
    try:
        utterances = load_corpus(replace(cfg.data, corpus=corpus, classes="")).utterances
    except SeraError:
        return {}
    first: dict[str, str] = {}
    for u in sorted(utterances, key=lambda u: u.id):
        if u.label in labels:
            first.setdefault(u.label, str(u.path))
    return dict(list(first.items())[: cfg.demo.examples])


def build_demo(cfg: SeraConfig | None = None) -> gr.Blocks:
    cfg = cfg or SeraConfig()
    try:
        predictor = Predictor(cfg.demo.checkpoint, cfg.demo.encoder or None, cfg.encoder.device)
    except SeraError as e:  # the page still opens and says how to make a model
        with gr.Blocks(title="sera") as page:
            gr.Markdown("# sera: speech emotion recognition\n\n" + HOW_TO_TRAIN.format(problem=e))
        return page
    audio_cfg = replace(predictor.audio_cfg, max_megabytes=cfg.demo.max_megabytes)

    def classify(path: str | None, voice: Stats | None = None):
        if not path:
            raise gr.Error("No audio yet: upload a file or record a clip first.")
        try:
            wave = load_audio(path, audio_cfg, cfg.demo.max_seconds)
            pred = predictor.predict_wave(wave, audio_cfg.sample_rate, Path(path).name, speaker=voice)
        except AudioError as e:  # the upload's temporary path means nothing to the visitor: name the file only
            raise gr.Error(f"{Path(e.path).name}: {e.problem}") from None
        except SeraError as e:
            raise gr.Error(str(e)) from None
        long = len(pred.windows) > 1
        with PYPLOT:  # pyplot's figure registry is global: one request at a time creates and closes figures
            figures = [plots.attention_figure(wave, audio_cfg.sample_rate, pred), plots.attributes_figure(pred),
                       plots.layer_weights_figure(pred.layer_weights)]
            timeline = plots.timeline_figure(pred) if long else None
            for fig in [*figures, timeline]:
                if fig is not None:
                    plt.close(fig)  # gradio still renders a closed figure; pyplot forgets it (no leak per request)
        segments = [[round(float(a), 2), round(float(b), 2), pred.labels[int(p.argmax())], round(float(p.max()), 3)]
                    for (a, b), p in zip(pred.windows, pred.window_probabilities)]
        return (pred.probabilities, *figures, gr.update(value=timeline, visible=long),
                gr.update(value=segments, visible=long), f"⚠️ {pred.warning()}" if pred.flags else "")

    def enrol(paths: list[str] | None):
        if not paths:
            raise gr.Error("No clips to enrol: add a few clips of the same speaker first.")
        try:
            voice = predictor.enrol([load_audio(p, audio_cfg, cfg.demo.max_seconds) for p in paths])
        except AudioError as e:
            raise gr.Error(f"{Path(e.path).name}: {e.problem}") from None
        except SeraError as e:
            raise gr.Error(str(e)) from None
        few = " With this few clips it may well do worse than the clip alone." if len(paths) < ENROL_PAYS else ""
        return voice, (f"**Enrolled: {len(paths)} clip(s).** Predictions now use this voice's statistics. "
                       f"{predictor.protocol_note(same_speaker=True)}{few}")

    trained_on = predictor.meta.get("trained_on", "?")
    with gr.Blocks(title="sera: speech emotion recognition") as page:
        gr.Markdown(
            f"# sera: speech emotion recognition\n"
            f"Frozen `{Path(predictor.meta['encoder']['name']).name}` encoder + sera adapter, trained on "
            f"**{trained_on}** ({', '.join(predictor.labels)}). Upload or record a clip (up to "
            f"{cfg.demo.max_seconds:g} s); a recording over {predictor.audio_cfg.window_seconds:g} s is cut at its "
            f"pauses and each speech segment scored. Acted English speech is what the model knows best. "
            f"{predictor.protocol_note()}"
        )
        with gr.Row():
            with gr.Column(scale=1):
                audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="clip", elem_id="clip")
                button = gr.Button("Classify", variant="primary")
                label = gr.Label(num_top_classes=min(4, len(predictor.labels)), label="emotion", elem_id="emotion")
                flag = gr.Markdown("", elem_id="flag")  # uncertain or out of domain (sera/calibrate.py)
                voice = gr.State(None)
                with gr.Accordion("Enrol this voice (speaker route)", open=False):
                    if predictor.can_enrol:
                        gr.Markdown(ENROL_HELP.format(n=ENROL_PAYS))
                        enrol_clips = gr.File(file_count="multiple", file_types=["audio"], type="filepath",
                                              label="clips of one speaker", elem_id="enrol-clips")
                        with gr.Row():
                            enrol_button = gr.Button("Enrol", elem_id="enrol")
                            forget_button = gr.Button("Forget the voice")
                        enrolled = gr.Markdown(NOT_ENROLLED, elem_id="enrolled")
                        enrol_button.click(enrol, inputs=enrol_clips, outputs=[voice, enrolled], api_name="enrol")
                        forget_button.click(lambda: (None, NOT_ENROLLED), outputs=[voice, enrolled], api_name=False)
                    else:
                        gr.Markdown("This checkpoint holds no training-speaker statistics (an older sera): "
                                    "enrolment would change nothing.")
            with gr.Column(scale=2):
                attention = gr.Plot(label="where the model listened (SAP attention)", elem_id="attention-plot")
                attributes = gr.Plot(label="local attributes over time", elem_id="attributes-plot")
                layers = gr.Plot(label="which encoder layers (WAP weights)", elem_id="layers-plot")
                timeline = gr.Plot(label="emotion over time", visible=False, elem_id="timeline-plot")
                segments = gr.Dataframe(headers=["start (s)", "end (s)", "emotion", "probability"], visible=False,
                                        label="speech segments (non-speech between them is skipped)",
                                        interactive=False, elem_id="segments")
        examples = example_clips(cfg, predictor.labels)
        if examples:
            gr.Examples([[p] for p in examples.values()], inputs=audio, label="examples from the data folder",
                        example_labels=[f"{label}: {Path(p).name}" for label, p in examples.items()])
        gr.on([button.click, audio.upload, audio.stop_recording], classify, inputs=[audio, voice],
              outputs=[label, attention, attributes, layers, timeline, segments, flag], api_name="classify")
    return page.queue(default_concurrency_limit=cfg.demo.concurrency)


def config_from_argv(argv: list[str]) -> SeraConfig:
    ap = argparse.ArgumentParser(description="sera's Gradio demo")
    ap.add_argument("--checkpoint", metavar="DIR|USER/NAME", help="a checkpoint folder or Hub repository "
                    "(default: SERA_CHECKPOINT or runs/ravdess+emodb/checkpoint)")
    ap.add_argument("--encoder", metavar="ID|PATH", help="the checkpoint's encoder in another folder or as a hub id")
    ap.add_argument("--device", help="auto (CUDA when present), cpu, cuda, ...")
    ap.add_argument("--port", type=int)
    args, _ = ap.parse_known_args(argv)  # a Space's or a notebook's own arguments are not ours
    cfg = SeraConfig()
    cfg.demo.checkpoint = args.checkpoint or cfg.demo.checkpoint
    cfg.demo.encoder = args.encoder or cfg.demo.encoder
    cfg.encoder.device = args.device or cfg.encoder.device
    cfg.demo.port = args.port or cfg.demo.port
    return cfg


CONFIG = config_from_argv(sys.argv[1:] if __name__ == "__main__" else [])
demo = build_demo(CONFIG)

if __name__ == "__main__":
    # gradio's own cap stops a runaway upload early; below it, sera's limit gives the clear message
    demo.launch(server_port=CONFIG.demo.port, max_file_size=f"{int(4 * CONFIG.demo.max_megabytes)}mb")
