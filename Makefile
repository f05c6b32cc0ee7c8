# Two commands on a fresh machine: `make demo` and `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: venv demo test test-slow bench clean

venv: $(STAMP)

# torch is installed first and pinned: the CPU wheel; an unpinned torch would pull CUDA.
$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[dev]'
	touch $(STAMP)

demo: venv
	$(VENV)/bin/vpd-stream demo

test: venv
	$(VENV)/bin/pytest -q

test-slow: venv
	$(VENV)/bin/pytest -q -m slow

bench: venv
	$(PY) -m offline_train.benchmarks.pipeline

clean:
	rm -rf $(VENV) build *.egg-info demo-out
