# Two entry points for a fresh machine: `make pipeline` (all notebooks, offline) and `make test`.
# Both create .venv when it is missing. Dependencies are declared in pyproject.toml; constraints.txt pins them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.poemlib-installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export MPLBACKEND := Agg

.PHONY: venv system-deps pipeline test test-fast lock strip demo bench acceptance

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

system-deps:
	bash scripts/system_deps.sh

pipeline: venv system-deps
	$(BIN)/poemlib pipeline

test: venv system-deps
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-fast: venv
	$(BIN)/python -m pytest -q -m "not slow"

demo: venv
	$(BIN)/poemlib demo

bench: venv
	for f in benchmarks/*.py; do case $$f in *_acceptance.py) continue;; esac; echo "== $$f"; $(BIN)/python $$f || exit 1; done

# Issue 13's acceptance grid (16 photos x 7 forms x 4 decodings x base/LoRA): about 40 minutes on 2 idle CPU cores.
acceptance: venv
	$(BIN)/python benchmarks/constrained_acceptance.py

# Re-resolve pins after changing dependencies in pyproject.toml.
lock:
	$(BIN)/pip install -q uv
	# Index options come from the environment (UV_INDEX_URL, UV_EXTRA_INDEX_URL, UV_FIND_LINKS), never from this file.
	$(BIN)/uv pip compile pyproject.toml --extra test --python-version 3.11 --index-strategy unsafe-best-match \
	  --no-header --no-annotate -o constraints.txt.new
	{ echo '# Resolved pins for the dependencies declared in pyproject.toml (regenerate: make lock). Used as pip -c constraints.'; \
	  cat constraints.txt.new; } > constraints.txt && rm constraints.txt.new

# Notebooks are committed without outputs.
strip:
	$(BIN)/python -m poemlib.nbstrip notebooks/*.ipynb
