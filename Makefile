# Two commands for a new user:  make study   (environment + data + notebooks)   and   make test
# make study writes into $(RESULTS) (default out/, git-ignored); make compare diffs it against the
# committed reference results/; make study report RESULTS=results FORCE=1 regenerates the reference.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PROFILE ?= quick
# per-profile defaults (a P or NOTEBOOKS given on the command line wins): finetune runs the claims study,
# p = 15 and 70, notebooks 00 01 04 02 03 06 (no Grad-CAM)
ifeq ($(PROFILE),finetune)
P      ?= 15 70
NOTEBOOKS ?= 00 01 04 02 03 06
endif
P      ?= 15 30 45 60 70
SEEDS  ?= 0 1 2
NOTEBOOKS ?= 00 01 02 03 04 05 06
DATA_ROOT ?=
DATA_ARG := $(if $(DATA_ROOT),--data-root $(DATA_ROOT),)
RESULTS ?= out
REFERENCE ?= results
TOLERANCE ?= 0.01
FORCE  ?=
FORCE_ARG := $(if $(FORCE),--force,)
# where the sweep's notebooks run: local (the default: a job per (p, seed) chain on this machine, as many at once
# as its cores hold at the profile's CPUs per job: quick 1, so two chains on two cores), inline (here, one after
# another) or slurm (a SLURM job per chain); SWEEP_ARGS="--slurm-partition gpu --slurm-time 600" adds sweep options
EXECUTOR ?= local
# TENSORBOARD=tb: TensorBoard curves of every trained model into tb/ (tensorboard --logdir tb)
TENSORBOARD ?=
SWEEP_ARGS ?=
SWEEP_OPTS = --executor $(EXECUTOR) $(if $(TENSORBOARD),--tensorboard $(TENSORBOARD),) $(SWEEP_ARGS)
# make lab LAB_ARGS="--no-browser --ip=0.0.0.0 --port=8888": options for jupyter lab (--allow-root is added for root)
LAB_ARGS ?=
ROOT_ARG = $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root,)
# torch: the CPU build where no GPU is present and the CPU wheel index answers, else the default build
TORCH ?= 2.14.1
TORCHVISION ?= 0.29.1
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: venv data study finetune-study ablations compare test lab bench cut-bench report check-report clean-cache

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@if ! command -v nvidia-smi >/dev/null 2>&1 && \
	   $(PY) -c "import urllib.request; urllib.request.urlopen('$(TORCH_CPU_INDEX)/torch/', timeout=10)" 2>/dev/null && \
	   $(PY) -m pip install --quiet --extra-index-url $(TORCH_CPU_INDEX) "torch==$(TORCH)+cpu" "torchvision==$(TORCHVISION)+cpu"; then \
	  echo "torch: CPU build (no GPU here) from $(TORCH_CPU_INDEX)"; \
	else \
	  echo "torch: default build (a GPU is present, or $(TORCH_CPU_INDEX) cannot be reached)"; \
	  $(PY) -m pip install --quiet "torch==$(TORCH)" "torchvision==$(TORCHVISION)"; \
	fi
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m ipykernel install --sys-prefix --name repro-mtkd --display-name "Python (repro-mtkd)" >/dev/null
	touch $@

venv: $(VENV)/.installed

data: venv
	$(PY) -m repro data --summary --profile $(PROFILE) --results-root $(RESULTS) $(DATA_ARG)

study: venv
	$(PY) -m repro data --summary --profile $(PROFILE) --results-root $(RESULTS) $(DATA_ARG)
	$(PY) -m repro sweep --profile $(PROFILE) --notebooks $(NOTEBOOKS) --p $(P) --seeds $(SEEDS) $(DATA_ARG) \
	  --results-root $(RESULTS) $(FORCE_ARG) $(SWEEP_OPTS)

# the finetune profile's claims study (= make study PROFILE=finetune), then its report
finetune-study:
	$(MAKE) study report PROFILE=finetune

compare: venv
	$(PY) -m repro compare --profile $(PROFILE) --results-root $(RESULTS) --reference $(REFERENCE) --tolerance $(TOLERANCE)

test: venv
	$(PY) -m pytest -q tests notebooks --nbval-lax --nbval-current-env

lab: venv
	$(VENV)/bin/jupyter lab notebooks/ $(ROOT_ARG) $(LAB_ARGS)

bench: venv
	$(PY) -m repro bench --profile $(PROFILE) $(DATA_ARG) --results-root $(RESULTS)

# training speed of the encoder's top stages per cut (trainable = k), from trunk maps of 256 images
CUTS ?= 1 2 3 4
CUT_PROFILE ?= finetune
cut-bench: venv
	$(PY) -m repro.analysis.cut_bench --profile $(CUT_PROFILE) --cuts $(CUTS) $(DATA_ARG)

# notebook 07 (the ablations beyond the paper) at p = 15 and 70, with the teachers and the τ study it needs
ABLATION_P ?= 15 70
ablations: venv
	$(PY) -m repro sweep --profile $(PROFILE) --notebooks 01 04 07 --p $(ABLATION_P) --seeds $(SEEDS) $(DATA_ARG) \
	  --results-root $(RESULTS) $(FORCE_ARG) $(SWEEP_OPTS)

report: venv
	$(PY) -m repro report --profile $(PROFILE) --results-root $(RESULTS)

# the committed report: self-contained (nothing fetched from outside the file), tidy tables, figures with
# data and alt text, rendered offline in headless Chromium (REPORT=out/quick/report/report.html checks your own)
check-report: venv
	$(PY) -m repro check-report $(or $(REPORT),$(REFERENCE)/$(PROFILE)/report/report.html)

clean-cache:
	rm -rf $(RESULTS)/cache/
