# The commands the README names. Everything installs into .venv from pyproject.toml, pinned by
# constraints.txt (exact versions; torch is the CPU wheel 2.13.0).
VENV ?= .venv
PY := $(VENV)/bin/python
SOFTSENSOR := $(VENV)/bin/softsensor
DEBUTANIZER ?=  # the debutanizer data file (not shipped): make quickstart-debutanizer DEBUTANIZER=path
RUN ?= runs/quickstart

.PHONY: install tools quickstart quickstart-debutanizer test lint bench-debutanizer bench-column \
	bench-paper bench-paper-quick clean

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[train,dev,bench]"
	touch $@

install: $(VENV)/.installed

# The main job end to end on the built-in default: simulate a week of Column A, train and
# prune a soft sensor on it with connection appraisal, export and register it, serve it and
# print a prediction made over HTTP (see scripts/quickstart.sh; SERVE=0 stops after that).
quickstart: install
	scripts/quickstart.sh

# The same on the real debutanizer data: pass the data file's path (it is not shipped).
quickstart-debutanizer: install
	@test -n "$(DEBUTANIZER)" || { echo "pass the debutanizer data file: make quickstart-debutanizer DEBUTANIZER=path/to/debutanizer_data.txt"; exit 2; }
	$(SOFTSENSOR) train --spec training/specs/debutanizer.yaml --data $(DEBUTANIZER) \
		--method ca --seed 0 --out $(RUN)/debutanizer-ca

# Debian tools some tests use (promtool; podman and debootstrap for the container test;
# chromium for the docs pages rendered in a real browser; the PostgreSQL server the state
# store's tests start in a temporary directory).
# Best effort: a test whose tool is missing skips and says why.
tools:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=""; \
	  command -v promtool >/dev/null || missing="$$missing prometheus"; \
	  command -v podman >/dev/null || missing="$$missing podman"; \
	  command -v debootstrap >/dev/null || missing="$$missing debootstrap"; \
	  command -v chromium >/dev/null || missing="$$missing chromium"; \
	  command -v wrk >/dev/null || missing="$$missing wrk"; \
	  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	  if [ -n "$$missing" ]; then \
	    timeout 900 sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends $$missing" >/dev/null 2>&1 \
	    || echo "note: could not install$$missing; the tests that need them will skip"; \
	  fi; \
	fi

test: install tools
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy service training bench tests

bench-debutanizer: install
	$(PY) -m bench.protocol --seeds 5 --noise 0 0.05
	$(PY) -m bench.protocol --spec training/specs/debutanizer_lags.yaml --seeds 5 --noise 0 \
		--out bench/results/debutanizer_lags
	$(PY) -m bench.training_overhead --repeats 5

bench-column: install
	$(PY) -m bench.protocol --simulate-days 7 --data bench/results/column_a/column_a.csv \
		--seeds 5 --noise 0 --out bench/results/column_a

# The paper's evaluation (docs/benchmarks.md, "Reproducing the paper"): every method on the
# debutanizer, simulated Column A and MNIST over 5 seeds, plus CA's ablations. Resumes.
bench-paper: install
	$(PY) -m bench.paper

bench-paper-quick: install
	$(PY) -m bench.paper --quick

clean:
	rm -rf $(VENV) runs
