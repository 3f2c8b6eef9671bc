# Everything a fresh machine needs: `make demo` (the main job) and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
DATA   ?= ../shared/data/scifact
WORK   ?= work
NAME   := $(notdir $(abspath $(DATA)))

.PHONY: venv browser demo test test-unit test-integration eval-docs bench bench-depth bench-load bench-quantization \
	bench-scaling bench-reference bench-million train-demo train-ablation adapt-docs bench-encode clean

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

# Debian's chromium and chromium-driver for the search page's headless-browser test
# (tests/test_search_page_browser.py); installed once, with sudo when not root.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver; }

# Unit tests and integration tests (the latter read ../shared/data). Under CI=true a test that
# cannot run (missing data, extra or browser) fails instead of skipping (tests/conftest.py).
test: venv browser
	$(BIN)/python -m pytest

test-unit: venv browser
	$(BIN)/python -m pytest -m "not integration"

test-integration: venv
	$(BIN)/python -m pytest -m integration

# Regenerate docs/evaluation.md (tables) and docs/alpha-*.png (plots) from the shared collections.
eval-docs: venv
	$(BIN)/python docs/evaluation.py --data $(dir $(abspath $(DATA))) --work $(WORK)

# Early stopping and hybrid candidates (exact and ANN): docs/efficiency.md
bench: venv
	test -f $(WORK)/$(NAME)/vectors/manifest.json || $(BIN)/ff-index build --corpus $(DATA) --index $(WORK)/$(NAME) --force
	test -f $(WORK)/$(NAME)/ann/manifest.json || $(BIN)/ff-index ann build --index $(WORK)/$(NAME)
	$(BIN)/python benchmarks/efficiency.py --data $(DATA) --index $(WORK)/$(NAME)

# Fast-Forward's nDCG@10, R@100 and ms per query against the re-ranking depth k_S (10 to 5,000) on SciFact and
# Cranfield (a few minutes on 2 cores): docs/depth.md and docs/depth.png
bench-depth: venv
	test -f $(WORK)/$(NAME)/vectors/manifest.json || $(BIN)/ff-index build --corpus $(DATA) --index $(WORK)/$(NAME) --force
	test -f $(WORK)/cranfield/vectors/manifest.json || $(BIN)/ff-index build --corpus $(CRANFIELD) --index $(WORK)/cranfield --force
	$(BIN)/python benchmarks/depth.py --collection $(DATA)=$(WORK)/$(NAME) --collection $(CRANFIELD)=$(WORK)/cranfield

# One million generated documents end to end beside SciFact (about 10 minutes on 2 otherwise idle cores; removes
# what it built): docs/million.md
bench-million: venv
	$(BIN)/python benchmarks/million.py --source $(DATA) --scifact-index $(WORK)/$(NAME)

# Quantised (float16, int8, PQ, OPQ) and coalesced indexes: docs/quantization.md
# docs/quantization.md (SciFact) and docs/quantization-cranfield.md.
CRANFIELD ?= $(dir $(DATA))cranfield
bench-quantization: venv
	test -f $(WORK)/$(NAME)-passages/manifest.json || $(BIN)/ff-index build --corpus $(DATA) \
		--index $(WORK)/$(NAME)-passages --passage-words 100 --stride 50 --force
	$(BIN)/python benchmarks/quantization.py --data $(DATA) --index $(WORK)/$(NAME) --work $(WORK)/quantized \
		--opq --passage-index $(WORK)/$(NAME)-passages --deltas 0.1 0.2 0.3 --out docs/quantization.md
	test -f $(WORK)/cranfield/vectors/manifest.json || $(BIN)/ff-index build --corpus $(CRANFIELD) \
		--index $(WORK)/cranfield --force
	test -f $(WORK)/cranfield-passages/manifest.json || $(BIN)/ff-index build --corpus $(CRANFIELD) \
		--index $(WORK)/cranfield-passages --passage-words 100 --stride 50 --force
	$(BIN)/python benchmarks/quantization.py --data $(CRANFIELD) --index $(WORK)/cranfield \
		--work $(WORK)/quantized-cranfield --opq --passage-index $(WORK)/cranfield-passages --deltas 0.1 0.2 0.3 \
		--out docs/quantization-cranfield.md

# ff-serve under load on the SciFact index (loopback only, bounded), then documents added over HTTP to a copy
# of it while searches run (the index itself is not written): docs/load.md
bench-load: venv
	$(BIN)/python benchmarks/load_test.py --index $(WORK)/$(NAME) --queries $(DATA) --soak 10000

# Re-ranking latency on a 1M-vector synthetic index vs SciFact: docs/scaling.md
bench-scaling: venv
	$(BIN)/python benchmarks/scaling.py --index $(WORK)/$(NAME)

# The training recipe on SciFact (train split only for training and alpha tuning; evaluated on test).
# At query time only the query is encoded, so the 4-layer model goes where latency is paid: the
# 6-layer all-MiniLM-L6-v2 is fine-tuned on BM25 hard negatives and encodes the documents (offline);
# all-MiniLM-L6-v2 pruned to 4 layers (plus a least-squares map) is distilled from it on query-like
# texts, then trained contrastively against the fine-tuned model's stored document vectors (ff-train
# query-tune), and encodes the queries. The last lines compare the original 6-layer model, the fine-tuned
# one, and the 4-layer query encoder before and after query-tune: dense-only and Fast-Forward nDCG@10 on
# test, query-encoding latency, and the same on Cranfield's test queries (never trained on: its documents
# encoded by the fine-tuned model, alpha and fusion as tuned on SciFact).
TRAIN             ?= $(WORK)/train
TRAIN_EPOCHS      ?= 1
DISTILL_EPOCHS    ?= 1
QUERY_TUNE_EPOCHS ?= 3
train-demo: venv
	test -f $(WORK)/$(NAME)/vectors/manifest.json || $(BIN)/ff-index build --corpus $(DATA) --index $(WORK)/$(NAME) --force
	$(BIN)/ff-train dev-split --data $(DATA) --out $(TRAIN)/data --split train --dev dev --fraction 0.15 --force
	$(BIN)/ff-train mine --index $(WORK)/$(NAME) --queries $(TRAIN)/data --split train --depth 30 \
		--group-by length --out $(TRAIN)/negatives.jsonl
	$(BIN)/ff-train train --data $(TRAIN)/negatives.jsonl --epochs $(TRAIN_EPOCHS) --out $(TRAIN)/minilm-6-ft --force --quiet
	$(BIN)/ff-index build --corpus $(TRAIN)/data --index $(TRAIN)/index-ft --encoder $(TRAIN)/minilm-6-ft --force --quiet
	test -f $(WORK)/cranfield/vectors/manifest.json || $(BIN)/ff-index build --corpus $(CRANFIELD) --index $(WORK)/cranfield --force
	$(BIN)/ff-index build --corpus $(CRANFIELD) --index $(TRAIN)/cranfield-ft --encoder $(TRAIN)/minilm-6-ft --force --quiet
	$(BIN)/ff-train prune --keep 4 --out $(TRAIN)/minilm-4 --force --quiet
	$(BIN)/ff-train distill --texts $(TRAIN)/data --short-texts --teacher $(TRAIN)/minilm-6-ft --model $(TRAIN)/minilm-4 \
		--init-projection --epochs $(DISTILL_EPOCHS) --lr 2e-4 --batch-size 64 --cache-dir $(TRAIN)/teacher-cache \
		--out $(TRAIN)/minilm-4-query --force --quiet
	$(BIN)/ff-train mine --index $(WORK)/$(NAME) --queries $(TRAIN)/data --split train --depth 30 --negatives 8 \
		--out $(TRAIN)/negatives-8.jsonl
	$(BIN)/ff-train query-tune --data $(TRAIN)/negatives-8.jsonl --index $(TRAIN)/index-ft --model $(TRAIN)/minilm-4-query \
		--negatives 8 --epochs $(QUERY_TUNE_EPOCHS) --lr 5e-5 --out $(TRAIN)/minilm-4-query-tuned --force --quiet
	$(BIN)/ff-index query-encoder --index $(TRAIN)/index-ft --encoder $(TRAIN)/minilm-4-query-tuned
	$(BIN)/ff-train evaluate --model default --index $(WORK)/$(NAME) --data $(TRAIN)/data --split test --tune-split dev \
		--also $(CRANFIELD)=$(WORK)/cranfield --json $(TRAIN)/report-original.json --quiet
	$(BIN)/ff-train evaluate --model $(TRAIN)/minilm-6-ft $(TRAIN)/minilm-4-query $(TRAIN)/minilm-4-query-tuned \
		--index $(TRAIN)/index-ft --queries-only --data $(TRAIN)/data --split test --tune-split dev \
		--also $(CRANFIELD)=$(TRAIN)/cranfield-ft --json $(TRAIN)/report.json --quiet

# The ablation table of docs/training.md, every row also on Cranfield (hours on 2 CPU cores; reuses
# train-demo's data, models and reports).
train-ablation: venv
	test -f $(WORK)/$(NAME)/vectors/manifest.json || $(BIN)/ff-index build --corpus $(DATA) --index $(WORK)/$(NAME) --force
	test -f $(WORK)/cranfield/vectors/manifest.json || $(BIN)/ff-index build --corpus $(CRANFIELD) --index $(WORK)/cranfield --force
	$(BIN)/python docs/training.py --data $(DATA) --index $(WORK)/$(NAME) --work $(TRAIN) \
		--also-data $(CRANFIELD) --also-index $(WORK)/cranfield --out docs/training.md

# all-MiniLM-L6-v2 pruned to 4 layers and adapted to Cranfield as its query encoder without labels (ff-train
# adapt on a copy of the index), against the shipped 6 layers, with SciFact as the out-of-domain check:
# docs/adapt.md
adapt-docs: venv
	test -f $(WORK)/cranfield/vectors/manifest.json || $(BIN)/ff-index build --corpus $(CRANFIELD) --index $(WORK)/cranfield --force
	test -f $(WORK)/$(NAME)/vectors/manifest.json || $(BIN)/ff-index build --corpus $(DATA) --index $(WORK)/$(NAME) --force
	$(BIN)/python docs/adapt.py --data $(CRANFIELD) --index $(WORK)/cranfield --work $(WORK)/adapt-cranfield \
		--also $(DATA)=$(WORK)/$(NAME) --out docs/adapt.md

# Corpus encoding throughput, plain sentence-transformers encode vs our runners: docs/encoding.md
bench-encode: venv
	$(BIN)/python benchmarks/encode_throughput.py --passages 2000 --repeat 3 --ray --out docs/encoding.md

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
