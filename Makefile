# Two commands set up a fresh machine: `make demo` (the main job) and `make test`.
# Both create or reuse .venv and are quick when it is already set up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rtpose-installed
export RTPOSE_DATA ?= $(abspath ../shared/data)

.PHONY: demo test setup model clean-venv

setup: $(STAMP)

# torch==2.13.0 first: on CPU machines that takes the local CPU build, so the
# `train` extra's torch range is already met and no CUDA packages are pulled.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -e '.[train,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m rtpose run experiments/male_approach_replay.yaml --summary runs/demo_summary.json

test: $(STAMP)
	$(PY) -m pytest -q tests

clean-venv:
	rm -rf $(VENV)

# Retrain, export and evaluate the shipped flies13 model (<= 20 min on 2 CPU cores, bf16
# where the CPU has it, fp32 where not; `make model TRAIN_ARGS="--set precision=fp32"`
# forces fp32). Scored on the two held-out blocks: validation frames 1150-1199 and the
# close-courtship frames 1270-1299; the model card shows both, split by distance.
MODEL_RUN := runs/flies13
TRAIN_ARGS ?=
FLIES := $(RTPOSE_DATA)/flies13
EVAL_SPLIT = --anchor-part thorax --animal-size $$($(PY) -c "import json; print(json.load(open('$(MODEL_RUN)/model.json'))['animal_size_px'])")
model: $(STAMP)
	$(PY) -m rtpose train experiments/train/flies13.yaml -o $(MODEL_RUN) $(TRAIN_ARGS)
	$(PY) -m rtpose export $(MODEL_RUN) -o models/flies13 --int8
	$(PY) -m rtpose predict -m models/flies13 -i $(FLIES)/clip.trainval.slp --only-labeled --frames 1150-1199 -o $(MODEL_RUN)/val_predictions.slp
	$(PY) -m rtpose eval -g $(FLIES)/clip.trainval.slp -p $(MODEL_RUN)/val_predictions.slp --px-per-mm 30.3 $(EVAL_SPLIT) --json $(MODEL_RUN)/val_eval.json
	$(PY) -m rtpose predict -m models/flies13 -i $(FLIES)/clip.close.slp --only-labeled --frames 1270-1299 -o $(MODEL_RUN)/close_predictions.slp
	$(PY) -m rtpose eval -g $(FLIES)/clip.close.slp -p $(MODEL_RUN)/close_predictions.slp --px-per-mm 30.3 $(EVAL_SPLIT) --json $(MODEL_RUN)/close_eval.json
	$(PY) experiments/train/model_card.py $(MODEL_RUN) models/flies13 $(MODEL_RUN)/val_eval.json --close $(MODEL_RUN)/close_eval.json "make model" \
	  "# which runs:" \
	  "rtpose train experiments/train/flies13.yaml -o $(MODEL_RUN)" \
	  "rtpose export $(MODEL_RUN) -o models/flies13 --int8" \
	  "rtpose predict -m models/flies13 -i \$${RTPOSE_DATA}/flies13/clip.trainval.slp --only-labeled --frames 1150-1199 -o $(MODEL_RUN)/val_predictions.slp" \
	  "rtpose eval -g \$${RTPOSE_DATA}/flies13/clip.trainval.slp -p $(MODEL_RUN)/val_predictions.slp --px-per-mm 30.3 --anchor-part thorax --animal-size SIZE --json $(MODEL_RUN)/val_eval.json" \
	  "rtpose predict -m models/flies13 -i \$${RTPOSE_DATA}/flies13/clip.close.slp --only-labeled --frames 1270-1299 -o $(MODEL_RUN)/close_predictions.slp" \
	  "rtpose eval -g \$${RTPOSE_DATA}/flies13/clip.close.slp -p $(MODEL_RUN)/close_predictions.slp --px-per-mm 30.3 --anchor-part thorax --animal-size SIZE --json $(MODEL_RUN)/close_eval.json" \
	  "# SIZE: animal_size_px of $(MODEL_RUN)/model.json (the unit of the distance bins)"
