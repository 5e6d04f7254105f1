# The commands the README names. Everything installs into .venv from pyproject.toml, pinned by
# constraints.txt (exact versions; torch is the CPU wheel 2.13.0).
VENV ?= .venv
PY := $(VENV)/bin/python
SOFTSENSOR := $(VENV)/bin/softsensor
DEBUTANIZER ?= ../shared/datasets/debutanizer/debutanizer_data.txt
RUN ?= runs/quickstart

.PHONY: install quickstart test lint bench-debutanizer clean

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[train,dev]"
	touch $@

install: $(VENV)/.installed

# The main job end to end on the built-in default.
quickstart: install
	$(SOFTSENSOR) train --spec training/specs/debutanizer.yaml --data $(DEBUTANIZER) \
		--method ca --seed 0 --out $(RUN)

test: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy service training bench tests

bench-debutanizer: install
	$(PY) -m bench.debutanizer --seeds 5 --noise 0 0.05

clean:
	rm -rf $(VENV) runs
