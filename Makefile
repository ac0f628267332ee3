# sera: the two commands a fresh machine needs are `make reproduce` (main job) and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip -q --disable-pip-version-check
QUIET_PIP := 2>&1 | { grep -v '^WARNING: Location' || true; }

# Data and the default encoder come from ../shared when it sits beside the checkout.
SHARED := $(abspath ../shared)
# The main job, the demo and the bench use Whisper base (multilingual; the measured default, bench/README);
# the tests keep the 4-layer tiny.en, which is fast.
ifneq ($(wildcard $(SHARED)/data),)
export SERA_DATA ?= $(SHARED)/data
export SERA_ENCODER ?= $(SHARED)/models/whisper-base
TEST_ENCODER ?= $(SHARED)/models/whisper-tiny.en
endif
export SERA_CACHE ?= $(CURDIR)/cache
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: install test reproduce demo bench clean help
help:
	@echo "make install    create .venv: torch==2.13.0 (CPU) first, then sera with all extras"
	@echo "make reproduce  the main job: RAVDESS and EmoDB (downloaded if missing), their features, 5-fold CV of the method on both, a final checkpoint"
	@echo "make test       the test suite (what CI runs)"
	@echo "make bench      benchmarks, results under bench/results/"
	@echo "make demo       the Gradio demo"

install: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install torch==2.13.0 $(QUIET_PIP)
	$(PIP) install -e ".[all]" $(QUIET_PIP)
	$(BIN)/python -c "import torch, transformers, sera; print('sera', sera.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__)"
	touch $@

# Two pytest-xdist workers of one thread each: many tests wait on a subprocess, a browser or a server,
# so two share the 2 cores better than one (PYTEST_WORKERS=0 runs them in one process).
PYTEST_WORKERS ?= 2
test: install
	$(if $(TEST_ENCODER),SERA_ENCODER=$(TEST_ENCODER)) $(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

# The shipped checkpoint (make demo, sera predict) is the `reproduce` preset (sera/config.py says what it is and
# why; notebook 06 runs the same preset through sera.recipe.train). Folds train side by side, one process per core.
JOBS ?= $(shell nproc 2>/dev/null || echo 1)
reproduce: install
	$(BIN)/sera download ravdess emodb
	$(BIN)/sera extract --corpus ravdess
	$(BIN)/sera extract --corpus emodb
	$(BIN)/sera train --preset reproduce --jobs $(JOBS) --out runs/ravdess+emodb

# make bench: every figure of bench/results (hours on the 2-core CPU; each script resumes or caches).
# make bench BENCH_ARGS=--quick: the same harness on a few speakers and epochs (minutes; CI runs it).
QUICK_BENCH := $(findstring --quick,$(BENCH_ARGS))
comma := ,
BENCH_CHECKPOINT ?= $(if $(QUICK_BENCH),runs/quick/checkpoint,runs/ravdess+emodb/checkpoint)
bench: install
	$(BIN)/python bench/extract_speed.py $(BENCH_ARGS)
	$(BIN)/python bench/encoders.py $(BENCH_ARGS)
	$(BIN)/python bench/baselines.py $(BENCH_ARGS)
	$(BIN)/python bench/adapter.py $(BENCH_ARGS)
	$(BIN)/python bench/whisper_padding.py $(BENCH_ARGS)
	$(BIN)/python bench/enrolment.py $(BENCH_ARGS)
	$(BIN)/python bench/vad_pooling.py $(BENCH_ARGS)
	$(BIN)/python bench/speech_only.py $(BENCH_ARGS)
	$(BIN)/python bench/probe_fusion.py $(BENCH_ARGS)
	$(BIN)/python bench/probe_fusion.py --parts ravdess$(if $(QUICK_BENCH),,$(comma)emodb) --residual $(BENCH_ARGS)
	@if [ -z "$(QUICK_BENCH)" ]; then $(BIN)/python bench/probe_fusion.py --parts cross --train-augment noise,telephone,room \
		&& $(BIN)/python bench/probe_fusion.py --parts ravdess,emodb,cross,emobox,ablations --train-augment "noise|telephone|room" --train-copies swap; fi
	$(BIN)/python bench/scaling_data.py $(BENCH_ARGS)
	$(BIN)/python bench/microphone.py $(BENCH_ARGS)
	$(BIN)/python bench/calibration_shift.py $(BENCH_ARGS)
	$(BIN)/python bench/stage1_audio.py $(BENCH_ARGS)
	$(BIN)/python bench/search.py $(BENCH_ARGS)
	@test -f $(BENCH_CHECKPOINT)/config.json || { if [ -n "$(QUICK_BENCH)" ]; then \
		$(BIN)/sera train --corpus ravdess --quick --no-progress --out runs/quick; else $(MAKE) --no-print-directory reproduce; fi; }
	$(BIN)/python bench/scaling.py --checkpoint $(BENCH_CHECKPOINT) $(BENCH_ARGS)
	$(BIN)/python bench/demo_latency.py --checkpoint $(BENCH_CHECKPOINT) $(BENCH_ARGS)
	$(BIN)/python bench/startup.py --checkpoint $(BENCH_CHECKPOINT) $(BENCH_ARGS)
	@if [ -z "$(QUICK_BENCH)" ]; then $(BIN)/python bench/startup.py --reproduce; fi  # make reproduce, clean clone
	$(BIN)/python bench/report.py $(BENCH_ARGS)

CHECKPOINT ?= runs/ravdess+emodb/checkpoint
demo: install
	@test -f $(CHECKPOINT)/config.json || { echo "no checkpoint at $(CHECKPOINT): building it first (make reproduce)"; \
		$(MAKE) --no-print-directory reproduce; }
	$(BIN)/python app.py --checkpoint $(CHECKPOINT)

clean:
	rm -rf $(VENV) cache runs .pytest_cache
