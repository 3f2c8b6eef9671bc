# Everything a fresh machine needs: `make demo` (the main job) and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
DATA   ?= ../shared/data/scifact
WORK   ?= work
NAME   := $(notdir $(abspath $(DATA)))

.PHONY: venv demo test test-unit test-integration eval-docs bench bench-load bench-quantization bench-scaling bench-reference clean

venv: $(VENV)/.installed

# torch first, pinned to the CPU wheel, so nothing later pulls a CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet 'torch==2.13.0'
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# Build the BM25 + forward index for $(DATA), run its test queries three ways (BM25, exact dense
# retrieval, Fast-Forward re-ranking) and print the three evaluations side by side.
demo: venv
	@mkdir -p $(WORK)
	$(BIN)/ff-index build --corpus $(DATA) --index $(WORK)/$(NAME) --force
	$(BIN)/ff-rank run --index $(WORK)/$(NAME) --queries $(DATA) --split test --k 1000 \
		--out $(WORK)/$(NAME).bm25.trec --tag bm25
	$(BIN)/ff-rank run --mode dense --index $(WORK)/$(NAME) --queries $(DATA) --split test --k 1000 \
		--out $(WORK)/$(NAME).dense.trec --tag dense --quiet
	$(BIN)/ff-rank run --mode ff --index $(WORK)/$(NAME) --queries $(DATA) --split test --k 1000 \
		--out $(WORK)/$(NAME).ff.trec --tag ff --profile
	$(BIN)/ff-rank eval --qrels $(DATA) --split test \
		$(WORK)/$(NAME).bm25.trec $(WORK)/$(NAME).dense.trec $(WORK)/$(NAME).ff.trec \
		-m nDCG@10 -m R@100 -m R@1000 -m RR@10 -m AP

# Unit tests and integration tests (the latter read ../shared/data).
test: venv
	$(BIN)/python -m pytest

test-unit: venv
	$(BIN)/python -m pytest -m "not integration"

test-integration: venv
	$(BIN)/python -m pytest -m integration

# Regenerate docs/evaluation.md (tables) and docs/alpha-*.png (plots) from the shared collections.
eval-docs: venv
	$(BIN)/python docs/evaluation.py --data $(dir $(abspath $(DATA))) --work $(WORK)

# Early stopping and hybrid candidates: docs/efficiency.md
bench: venv
	$(BIN)/python benchmarks/efficiency.py --data $(DATA) --index $(WORK)/$(NAME)

# Quantised (float16, int8, PQ, OPQ) and coalesced indexes: docs/quantization.md
bench-quantization: venv
	test -f $(WORK)/$(NAME)-passages/manifest.json || $(BIN)/ff-index build --corpus $(DATA) \
		--index $(WORK)/$(NAME)-passages --passage-words 100 --stride 50 --force
	$(BIN)/python benchmarks/quantization.py --data $(DATA) --index $(WORK)/$(NAME) --work $(WORK)/quantized \
		--opq --passage-index $(WORK)/$(NAME)-passages --deltas 0.1 0.2 0.3 --out docs/quantization.md

# ff-serve under load on the SciFact index (loopback only, bounded): docs/load.md
bench-load: venv
	$(BIN)/python benchmarks/load_test.py --index $(WORK)/$(NAME) --queries $(DATA) --soak 2000

# Re-ranking latency on a 1M-vector synthetic index vs SciFact: docs/scaling.md
bench-scaling: venv
	$(BIN)/python benchmarks/scaling.py --index $(WORK)/$(NAME)

# Latency against the reference implementation, installed in its own environment (it pins numpy<2).
REF_VENV ?= .venv-ffref
$(REF_VENV)/.installed:
	$(PYTHON) -m venv $(REF_VENV)
	$(REF_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(REF_VENV)/bin/python -m pip install --quiet 'torch==2.13.0'
	$(REF_VENV)/bin/python -m pip install --quiet 'fast-forward-indexes==0.8.0'
	touch $@

bench-reference: venv $(REF_VENV)/.installed
	$(BIN)/python benchmarks/ff_vs_reference.py --data $(DATA) --index $(WORK)/$(NAME) \
		--reference-python $(REF_VENV)/bin/python

clean:
	rm -rf $(WORK) .pytest_cache
