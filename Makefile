# Two commands on a fresh machine: `make demo` and `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: venv demo lint test test-slow bench clean rtsp-deps

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

# ruff on the whole tree, mypy on the core (pyproject.toml holds their settings).
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: lint rtsp-deps
	$(VENV)/bin/pytest -q

# GStreamer's RTSP server (Debian packages) for tests/test_rtsp.py, installed by `make test`
# where it can be (root and apt-get; apt-get update runs once, only if a package is missing);
# elsewhere the set-up goes on and those tests skip with the reason.
RTSP_PACKAGES := gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-good
rtsp-deps:
	@dpkg -s $(RTSP_PACKAGES) >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(RTSP_PACKAGES); } || \
	  echo "rtsp-deps: not installed (needs root and apt-get); tests/test_rtsp.py will skip"

test-slow: venv
	$(VENV)/bin/pytest -q -m slow

bench: venv
	$(PY) -m offline_train.benchmarks.pipeline

clean:
	rm -rf $(VENV) build *.egg-info demo-out
