# Two commands set up a fresh machine: `make demo` (the main job) and `make test`.
# Both create or reuse .venv and are quick when it is already set up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rtpose-installed
export RTPOSE_DATA ?= $(abspath ../shared/data)

.PHONY: demo test setup browser model model-export clean-venv

setup: $(STAMP) browser

# torch==2.13.0 first: on CPU machines that takes the local CPU build, so the
# `train` extra's torch range is already met and no CUDA packages are pulled. `fleet` (Ray)
# is for the tests of `rtpose predict` on Ray; the demo does not use it.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -e '.[train,dev,fleet]'
	touch $(STAMP)

# The view's tests drive Debian's chromium through chromium-driver. Where either is missing,
# install both (apt-get, as root or through sudo); if that fails the browser tests fail
# and say what is missing: they never skip.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then exit 0; fi; \
	echo "installing chromium and chromium-driver (the view's browser tests need them)"; \
	SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	export DEBIAN_FRONTEND=noninteractive; \
	$$SUDO apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	{ $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q chromium chromium-driver >/dev/null; } || \
	echo "could not install chromium and chromium-driver: the view's browser tests will fail"

# The live view (rtpose view) starts beside the run and stops with it; open its address in a browser.
# Its address is printed once it serves; when it cannot start (VIEW_PORT in use, say), its
# one-line error is printed instead, and the run goes on without it (exit status: the run's).
VIEW_PORT ?= 8050
demo: $(STAMP)
	@mkdir -p runs
	@$(PY) -m rtpose view tcp://127.0.0.1:5555 --port $(VIEW_PORT) > runs/demo_view.log 2>&1 & view=$$!; \
	for i in $$(seq 300); do \
	  grep -q '^rtpose view: http://' runs/demo_view.log && break; kill -0 $$view 2>/dev/null || break; sleep 0.2; \
	done; \
	if kill -0 $$view 2>/dev/null; then \
	  echo "live view of this run: http://127.0.0.1:$(VIEW_PORT)/  (rtpose view, beside the run; log: runs/demo_view.log)"; \
	else \
	  wait $$view; view=; \
	  echo "live view not started: $$({ sed -n 's/^error: //p' runs/demo_view.log; tail -n 1 runs/demo_view.log; } | head -n 1)" >&2; \
	  next=$$(sed -n 's/.*e\.g\. --port \([0-9][0-9]*\).*/\1/p' runs/demo_view.log | head -n 1); \
	  case "$(VIEW_PORT)" in ''|*[!0-9]*) after=8050;; *) after=$$(($(VIEW_PORT) + 1));; esac; \
	  echo "the run goes on without it; for a view, choose another port: make demo VIEW_PORT=$${next:-$$after}" >&2; \
	fi; \
	$(PY) -m rtpose run experiments/male_approach_replay.yaml --summary runs/demo_summary.json --overwrite; status=$$?; \
	if [ -n "$$view" ]; then \
	  kill $$view 2>/dev/null; wait $$view 2>/dev/null; \
	  [ $$status -ne 0 ] || echo "to watch the next run: $(PY) -m rtpose view  (then open http://127.0.0.1:$(VIEW_PORT)/)"; \
	fi; \
	exit $$status

# The linter first (pyproject.toml [tool.ruff]: errors everywhere, docstrings on the contracts).
test: $(STAMP) browser
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q tests

clean-venv:
	rm -rf $(VENV)

# Retrain, export and evaluate the shipped flies13 model (<= 20 min on 2 CPU cores; the
# trainer times bf16 against fp32 where the CPU has bf16 and keeps the faster;
# `make model TRAIN_ARGS="--set precision=fp32"` forces fp32). It trains on the user
# labels and the close-courtship labels 1200-1269 (experiments/train/flies13_close.yaml).
# The export holds an fp32 and an int8 graph; both are scored. `make model EMULATE=1`
# also scores the int8 graph on an emulated AVX2 CPU without VNNI (qemu-user, ~1 min). Scored on two held-out blocks: validation frames 1150-1199 and the
# close-courtship frames 1270-1299; the model card shows both, split by distance.
MODEL_RUN := runs/flies13
# the run folder the card's "make model" commands name and the shipped rtpose.json records
# (an export made from another folder, e.g. MODEL_RUN=/tmp/run, still reproduces as make model)
CARD_RUN ?= $(MODEL_RUN)
CARD_FIRST ?=
MODEL_CONFIG := experiments/train/flies13_close.yaml
TRAIN_ARGS ?=
FLIES := $(RTPOSE_DATA)/flies13
VAL := -i $(FLIES)/clip.trainval.slp --only-labeled --frames 1150-1199
# the unit of the distance split: the training labels' median animal size (model.json)
SPLIT = --anchor-part thorax $$($(PY) -c "import json; s = json.load(open('$(MODEL_RUN)/model.json')).get('animal_size_px'); print(f'--animal-size {s}' if s else '')")
EVAL = -g $(FLIES)/clip.trainval.slp --px-per-mm 30.3 $(SPLIT)
CLOSE := -i $(FLIES)/clip.close.slp --only-labeled --frames 1270-1299
model: $(STAMP)
	$(PY) -m rtpose train $(MODEL_CONFIG) -o $(MODEL_RUN) --overwrite $(TRAIN_ARGS)
	$(MAKE) model-export

# Everything after training: export, check, score each graph, write the model card. It may run
# again on a run dir (`train --overwrite` keeps the predictions there), so predict and eval get --overwrite.
# The export's rtpose.json names its run folder relative to the repository (CARD_RUN), where
# make model trains it (rtpose/engine/base.py, SHIPPED_MODEL_RUN), not this machine's absolute path.
model-export: $(STAMP)
	$(PY) -m rtpose export $(MODEL_RUN) -o models/flies13 --int8 --overwrite
	$(PY) -c "import json, pathlib; from rtpose import jsonsafe; p = pathlib.Path('models/flies13/rtpose.json'); s = json.loads(p.read_text()); s['source']['dir'] = '$(CARD_RUN)'; p.write_text(jsonsafe.dumps(s, indent=2))"
	$(PY) -m rtpose check -m models/flies13
	$(PY) -m rtpose predict -m models/flies13 $(VAL) -o $(MODEL_RUN)/val_predictions.slp --overwrite
	$(PY) -m rtpose eval $(EVAL) -p $(MODEL_RUN)/val_predictions.slp --json $(MODEL_RUN)/val_eval.json --overwrite
	$(PY) -m rtpose predict -m models/flies13 $(CLOSE) -o $(MODEL_RUN)/close_predictions.slp --overwrite
	$(PY) -m rtpose eval -g $(FLIES)/clip.close.slp --px-per-mm 30.3 $(SPLIT) -p $(MODEL_RUN)/close_predictions.slp --json $(MODEL_RUN)/close_eval.json --overwrite
	for g in fp32 int8; do \
	  $(PY) -m rtpose predict -m models/flies13 --$$g $(VAL) -o $(MODEL_RUN)/val_predictions_$$g.slp --overwrite && \
	  $(PY) -m rtpose eval $(EVAL) -p $(MODEL_RUN)/val_predictions_$$g.slp --json $(MODEL_RUN)/val_eval_$$g.json --overwrite || exit 1; \
	done
	$(if $(EMULATE),qemu-x86_64 -cpu Haswell $(PY) -m rtpose predict -m models/flies13 --int8 $(VAL) -o $(MODEL_RUN)/val_predictions_int8_haswell.slp --overwrite 2>&1 | grep -v TCG; \
	  $(PY) -m rtpose eval $(EVAL) -p $(MODEL_RUN)/val_predictions_int8_haswell.slp --json $(MODEL_RUN)/val_eval_int8_haswell.json --overwrite)
	$(PY) experiments/train/model_card.py $(MODEL_RUN) models/flies13 $(MODEL_RUN)/val_eval.json \
	  --close $(MODEL_RUN)/close_eval.json \
	  --graph fp32=$(MODEL_RUN)/val_eval_fp32.json --graph int8=$(MODEL_RUN)/val_eval_int8.json \
	  $(if $(EMULATE),--graph "int8 on qemu-x86_64 -cpu Haswell (AVX2 without VNNI; flags by CPUID: avx2)=$(MODEL_RUN)/val_eval_int8_haswell.json") \
	  $(if $(CARD_FIRST),"$(CARD_FIRST)") \
	  "make model$(if $(EMULATE), EMULATE=1)$(if $(TRAIN_ARGS), TRAIN_ARGS='$(TRAIN_ARGS)')$(if $(EMULATE),   # EMULATE=1 also scores the int8 graph under qemu-x86_64 -cpu Haswell (AVX2 without VNNI; needs qemu-user))" \
	  "# which runs:" \
	  "rtpose train $(MODEL_CONFIG) -o $(CARD_RUN) --overwrite$(if $(TRAIN_ARGS), $(TRAIN_ARGS))" \
	  "rtpose export $(CARD_RUN) -o models/flies13 --int8 --overwrite" \
	  "rtpose check -m models/flies13" \
	  "rtpose predict -m models/flies13 -i \$${RTPOSE_DATA}/flies13/clip.trainval.slp --only-labeled --frames 1150-1199 -o $(CARD_RUN)/val_predictions.slp --overwrite   # and with --fp32, --int8" \
	  "rtpose eval -g \$${RTPOSE_DATA}/flies13/clip.trainval.slp -p $(CARD_RUN)/val_predictions.slp --px-per-mm 30.3 --anchor-part thorax --animal-size SIZE --json $(CARD_RUN)/val_eval.json --overwrite" \
	  "rtpose predict -m models/flies13 -i \$${RTPOSE_DATA}/flies13/clip.close.slp --only-labeled --frames 1270-1299 -o $(CARD_RUN)/close_predictions.slp --overwrite" \
	  "rtpose eval -g \$${RTPOSE_DATA}/flies13/clip.close.slp -p $(CARD_RUN)/close_predictions.slp --px-per-mm 30.3 --anchor-part thorax --animal-size SIZE --json $(CARD_RUN)/close_eval.json --overwrite" \
	  "# SIZE: animal_size_px of $(CARD_RUN)/model.json (the unit of the distance split)"
