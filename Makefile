# Two commands for a new user:  make study   (environment + data + notebooks)   and   make test
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PROFILE ?= quick
P      ?= 15 30 45 60 70
SEEDS  ?= 0 1 2
NOTEBOOKS ?= 00 01 02 03 04 05 06
DATA_ROOT ?=
DATA_ARG := $(if $(DATA_ROOT),--data-root $(DATA_ROOT),)

.PHONY: venv data study test lab bench report clean-cache

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m ipykernel install --sys-prefix --name repro-mtkd --display-name "Python (repro-mtkd)" >/dev/null
	touch $@

venv: $(VENV)/.installed

data: venv
	$(PY) -m repro data --summary --profile $(PROFILE) $(DATA_ARG)

study: venv
	$(PY) -m repro data --summary --profile $(PROFILE) $(DATA_ARG)
	$(PY) -m repro sweep --profile $(PROFILE) --notebooks $(NOTEBOOKS) --p $(P) --seeds $(SEEDS) $(DATA_ARG)

test: venv
	$(PY) -m pytest -q tests notebooks --nbval-lax --nbval-current-env

lab: venv
	$(VENV)/bin/jupyter lab notebooks/

bench: venv
	$(PY) -m repro bench --profile $(PROFILE) $(DATA_ARG)

report: venv
	$(PY) -m repro report --profile $(PROFILE)

clean-cache:
	rm -rf cache/
