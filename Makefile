# Steel surface defects: every job is a target; each one sets up the environment first.
#   make train-det                 synthetic data -> convert -> train -> evaluate (CPU, ~10 min)
#   make train-det DATA=path/to/NEU-DET   the real recipe for that dataset
#   make test                      lint + the whole test suite
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV    := .venv
PY      := $(VENV)/bin/python
DEFECTS := $(VENV)/bin/defects
UV      := $(or $(shell command -v uv 2>/dev/null),python3 -m uv)

DATA    ?=
NAME    ?= $(if $(DATA),$(shell basename "$(DATA)" | tr 'A-Z' 'a-z'),synthetic)
OUT     ?= datasets/converted/$(NAME)
SPLIT   ?= 0.8,0.2
SEED    ?= 0
# More convert options, e.g. CONVERT_ARGS=--keep-overlaps (overlapping crops in one split).
CONVERT_ARGS ?=
SYNTH_IMAGES ?= 500
TRAIN_ARGS ?=

.PHONY: help setup test-tools test lint review train-det train-cls convert-neu convert-gc10 synth bench bench-convert bench-predict bench-recipes bench-profile bench-profile-predict gpu-carry bench-classify bench-review bench-bootstrap bench-tta bench-operating-points bench-nms-iou bench-border bench-tiles release tide-reference clean

help:
	@sed -n '1,4p' Makefile | sed 's/^# \{0,1\}//'

# Idempotent: installs uv only if missing, re-syncs only when the lock or pyproject changes.
$(VENV)/.synced: pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 \
		|| python3 -m pip install --quiet uv
	$(UV) sync --frozen
	@touch $@

setup: $(VENV)/.synced

# Debian tools the tests use: headless Chromium loads the FiftyOne App; strace watches
# every process of the whole chain for a connection beyond loopback.
test-tools:
	@command -v chromium >/dev/null 2>&1 && command -v strace >/dev/null 2>&1 || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq chromium strace >/dev/null; }

# Two pytest workers, one per core, each test file whole on one of them (its module
# fixtures: a MongoDB server, a review dataset, built once). The suite is bound by the
# CPU: on the 2-core EPYC, three workers took 11 min 29 s against two's 10 min 23 s, and
# handing the training files out first (--no-loadscope-reorder) 11 min 8 s, so xdist's
# own order stays (README, `make test`).
TEST_WORKERS ?= 2

test: setup test-tools
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q --durations=15 -n $(TEST_WORKERS) --dist loadfile

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check . || true

synth: setup
	$(DEFECTS) synth --out datasets/generated/synthetic --images $(SYNTH_IMAGES) --seed $(SEED)

# DATA unset: generate the embedded synthetic data and use its recipe (datasets/synthetic.yaml).
train-det: setup
ifeq ($(DATA),)
	$(DEFECTS) synth --out datasets/generated/synthetic --images $(SYNTH_IMAGES) --seed $(SEED)
	$(DEFECTS) convert datasets/generated/synthetic --dataset synthetic --out $(OUT) --split $(SPLIT) --seed $(SEED) $(CONVERT_ARGS)
else
	$(DEFECTS) convert "$(DATA)" --out $(OUT) --split $(SPLIT) --seed $(SEED) $(CONVERT_ARGS)
endif
	$(DEFECTS) train --data $(OUT)/data.yaml --name $(NAME) $(TRAIN_ARGS)
	$(DEFECTS) evaluate --weights weights/$(NAME)/best.pt --data $(OUT)/data.yaml --split val --out reports/$(NAME)

# FiftyOne review with a detector's predictions (Ctrl-C to stop). DATA: a converter output,
# a raw dataset (converted into OUT first, for its ground truth and split) or a plain folder
# of images. Weights: WEIGHTS_REVIEW, else weights/NAME/best.pt if trained here, else the
# released model NAME (models/NAME), so a fresh clone reviews NEU-DET with no training.
# PREDICTIONS: any detector's results (COCO results or YOLO .txt folder) instead of weights.
REVIEW_WEIGHTS = $(or $(WEIGHTS_REVIEW),$(if $(wildcard weights/$(NAME)/best.pt),weights/$(NAME)/best.pt,$(NAME)))
review: setup
	@data="$(or $(DATA),$(OUT))"; \
	if [ -n "$(DATA)" ] && [ ! -f "$(DATA)/manifest.json" ] && \
		$(DEFECTS) validate "$(DATA)" >/dev/null 2>&1; then \
		$(DEFECTS) convert "$(DATA)" --out $(OUT) --split $(SPLIT) --seed $(SEED) $(CONVERT_ARGS) && data="$(OUT)"; \
	fi; \
	$(DEFECTS) review --data "$$data" $(if $(PREDICTIONS),--predictions "$(PREDICTIONS)",--weights $(REVIEW_WEIGHTS)) --name defects-$(NAME)

# Publish a trained run as models/NAME with its model card (RUNS: the run folders that made
# it, in order; the last one's best.pt is released). Replace a release rarely: git keeps each.
RUNS ?= weights/$(NAME)
release: setup
	$(DEFECTS) release --run $(RUNS) --data $(OUT) --name $(NAME)

convert-neu: setup
	@test -n "$(DATA)" || { echo "usage: make convert-neu DATA=path/to/NEU-DET [OUT=...]"; exit 2; }
	$(DEFECTS) convert "$(DATA)" --format neu-det --out $(OUT) --split $(SPLIT) --seed $(SEED) $(CONVERT_ARGS)

convert-gc10: setup
	@test -n "$(DATA)" || { echo "usage: make convert-gc10 DATA=path/to/GC10-DET [OUT=...]"; exit 2; }
	$(DEFECTS) convert "$(DATA)" --format gc10-det --out $(OUT) --split $(SPLIT) --seed $(SEED) $(CONVERT_ARGS)

# The released NEU-DET model (models/neu-det); WEIGHTS=weights/NAME/best.pt for a local run.
WEIGHTS ?= neu-det

bench: bench-convert bench-predict bench-classify bench-review bench-bootstrap bench-tta bench-operating-points bench-nms-iou bench-border bench-tiles

bench-convert: setup
	$(PY) bench/convert.py --data $(or $(DATA),../shared/datasets/NEU-DET)

bench-predict: setup
	$(PY) bench/predict.py --weights $(WEIGHTS) --data datasets/converted/neu-det

# Before a run on a lent GPU machine: the wheels it lacks and a NEU-DET copy, in .gpu/
# (carried). There: `bash tools/gpu/run.sh HOURS` (see tools/gpu/run.sh).
gpu-carry:
	bash tools/gpu/prepare.sh

# The time-to-accuracy study: each recipe variant trains HOURS (default 25 min) on the
# converted NEU-DET split, one after the other, then pycocotools scores it. ONLY=a,b picks.
bench-recipes: setup
	$(PY) bench/recipes.py --data datasets/converted/neu-det --hours $(or $(HOURS),0.4167) \
		$(if $(ONLY),--only $(ONLY))

# Where a CPU training epoch goes: loader wait against forward/backward, per batch.
bench-profile: setup
	$(PY) bench/profile_train.py --data datasets/converted/neu-det

# Where prediction's time goes: its stages, batch sizes and ONNX Runtime's operators.
bench-profile-predict: setup
	$(PY) bench/profile_predict.py --weights $(WEIGHTS) --data datasets/converted/neu-det

# 1,000 bootstrap replicates on NEU-DET's val split (target: 10 s) against re-running COCOeval.
bench-bootstrap: setup
	$(PY) bench/bootstrap.py --weights $(WEIGHTS) --data datasets/converted/neu-det

# Flip test-time augmentation: fusion IoU chosen on the train split, then val side by side
# with plain predictions and ultralytics' own TTA, with the paired difference.
bench-tta: setup
	$(PY) bench/tta.py --weights $(WEIGHTS) --data datasets/converted/neu-det

bench-operating-points: setup
	$(PY) bench/operating_points.py --weights $(WEIGHTS) --data datasets/converted/neu-det

bench-nms-iou: setup
	$(PY) bench/nms_iou.py --weights $(WEIGHTS) --data datasets/converted/neu-det

bench-border: setup
	$(PY) bench/border.py --weights $(WEIGHTS) --data datasets/converted/neu-det

bench-tiles: setup
	$(PY) bench/tiles.py --data datasets/converted/neu-det

bench-classify: setup
	$(PY) bench/classify.py --backbone $(WEIGHTS) --data datasets/converted/neu-det

# Cold review start of NEU-DET (target: under 30 s) against the same session by hand.
bench-review: setup
	$(PY) bench/review.py --weights $(WEIGHTS) --data datasets/converted/neu-det

# Image-level classifier on the detector's backbone. Defaults: the converted synthetic data
# and the detector make train-det trained on it, else the released neu-det.
BACKBONE ?= $(if $(wildcard weights/$(NAME)/best.pt),weights/$(NAME)/best.pt,neu-det)
train-cls: setup
	$(DEFECTS) train-cls --data $(or $(DATA),$(OUT)) --backbone $(BACKBONE) --name $(NAME)-cls $(TRAIN_ARGS)

# tidecv's figures for the TIDE parity test, in a throwaway venv: tidecv needs opencv-python,
# which must never enter the project's environment (two OpenCVs overwrite each other).
tide-reference:
	@tmp=$$(mktemp -d) && python3 -m venv $$tmp && $$tmp/bin/pip install -q tidecv==1.0.1 && \
		$$tmp/bin/python tests/data/tide/make_reference.py; status=$$?; rm -rf $$tmp; exit $$status

clean:
	rm -rf datasets/generated datasets/converted reports .state/runs
