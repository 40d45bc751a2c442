# zfvis: `make run` serves the bundled model on http://127.0.0.1:8080,
# `make test` runs every test. Both set up what they need first.

VENV  := .venv
PY    := $(VENV)/bin/python
TORCH := 2.13.0
TORCHVISION := 0.28.0
BIN   := target/release/zfvis
DEV   := target/release/zfvis-dev
ADDR  ?= 127.0.0.1:8080

.PHONY: run build build-dev test venv prereqs native-deps test-deps bench fuzz soak clean

prereqs:
	@command -v cargo >/dev/null 2>&1 || { echo "error: cargo not found; install Rust: https://rustup.rs"; exit 1; }
	@command -v python3 >/dev/null 2>&1 || { echo "error: python3 not found; install it: apt-get install -y python3 python3-venv"; exit 1; }

# libtorch comes from PyPI's torch wheel; .venv/libtorch points at it for
# .cargo/config.toml whatever the Python minor version is. torchvision is for
# distributed/train.py (ImageFolder), run with .venv/bin/torchrun.
$(VENV)/.ok:
	@$(MAKE) --no-print-directory prereqs
	@python3 -m venv $(VENV) >/dev/null 2>&1 || { rm -rf $(VENV); echo "error: python3 cannot create a venv; install it: apt-get install -y python3-venv"; exit 1; }
	$(VENV)/bin/pip install -q torch==$(TORCH) torchvision==$(TORCHVISION) numpy safetensors
	ln -sfn $$(cd $(VENV) && ls -d lib/python3*/site-packages/torch) $(VENV)/libtorch
	touch $@

# Reference networks for the import tests and benchmarks: torchvision
# (matching torch), pytorchcv, onnx, onnxruntime, onnxscript (torch.onnx.export's default exporter),
# timm (DeiT and other ViTs as users export them).
$(VENV)/.refs: $(VENV)/.ok
	$(VENV)/bin/pip install -q torch==$(TORCH) torchvision==$(TORCHVISION) pytorchcv onnx onnxruntime onnxscript timm==1.0.31
	touch $@

# References of the attribution methods and their scores: Captum, scipy, scikit-image.
$(VENV)/.attr: $(VENV)/.ok
	$(VENV)/bin/pip install -q torch==$(TORCH) captum scipy scikit-image
	touch $@

# The CAM family's reference and benchmark peer: the grad-cam package
# (pytorch-grad-cam; it brings opencv-python-headless and scikit-learn).
$(VENV)/.cam: $(VENV)/.ok
	$(VENV)/bin/pip install -q torch==$(TORCH) torchvision==$(TORCHVISION) grad-cam==1.5.7
	touch $@

# Feature visualisation's reference and benchmark peer: torch-lucent 0.1.8.
# It pins kornia <= 0.4.1, which does not install beside torch 2.13: it goes
# in without dependencies beside a current kornia (tests/visualize_ref.py
# points its two moved kornia functions at their new place) and the
# packages it imports.
$(VENV)/.lucent: $(VENV)/.ok
	$(VENV)/bin/pip install -q torch==$(TORCH) kornia==0.9.2 tqdm decorator ipython
	$(VENV)/bin/pip install -q --no-deps torch-lucent==0.1.8
	touch $@

venv: $(VENV)/.ok $(VENV)/.refs $(VENV)/.attr $(VENV)/.cam $(VENV)/.lucent

# JPEGs are decoded by libjpeg-turbo (as PIL, torchvision and browsers do),
# which the turbojpeg crate builds from source: it needs cmake and nasm.
native-deps:
	@command -v cmake >/dev/null 2>&1 && command -v nasm >/dev/null 2>&1 || { \
	  echo "installing cmake and nasm (to build libjpeg-turbo)"; \
	  (apt-get update -qq && apt-get install -y -qq cmake nasm) >/dev/null 2>&1 || \
	  (sudo apt-get update -qq && sudo apt-get install -y -qq cmake nasm) >/dev/null 2>&1 || \
	  { echo "error: cmake and nasm are needed; install them: apt-get install -y cmake nasm"; exit 1; }; }

build: $(VENV)/.ok native-deps
	cargo build --release -p zfvis

# The development harnesses (fuzz, soak, bench-http): target/release/zfvis-dev.
build-dev: build
	cargo build --release -p zfvis-dev

DATASET ?=
run: build
	$(BIN) serve --addr $(ADDR) --models models --data data $(if $(DATASET),--dataset $(DATASET))

# What the tests need beyond the venv: a real browser for the end-to-end test.
test-deps: $(VENV)/.ok $(VENV)/.refs $(VENV)/.attr $(VENV)/.cam $(VENV)/.lucent
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium for the browser test"; \
	  (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1 || \
	  (sudo apt-get update -qq && sudo apt-get install -y -qq chromium) >/dev/null 2>&1 || \
	  echo "warning: could not install chromium; the browser test will fail"; }
	@command -v npm >/dev/null 2>&1 || { echo "error: npm not found (needed for the browser test); install it: apt-get install -y nodejs npm"; exit 1; }
	@test -d tests/e2e/node_modules/playwright-core || (cd tests/e2e && npm ci --no-audit --no-fund --silent)

# zfvis-dev (the fuzz/soak/bench-http harnesses) is built first: tests run it.
# Tests in `needs_shared` modules read ../shared/datasets (woofnette, dog-faces):
# they run where it is present (CI requires it: ZFVIS_REQUIRE_SHARED=1); elsewhere
# they are skipped and named in one line at the end, never counted as passed.
SHARED := ../shared/datasets
# The habits checked first: formatting and clippy's lints, warnings denied.
test: test-deps native-deps
	cargo fmt --all --check
	cargo clippy --release --workspace --all-targets -- -D warnings
	cargo build --release --workspace --bins
	@if [ -d $(SHARED) ] || [ "$${ZFVIS_REQUIRE_SHARED:-}" = 1 ]; then \
	  cargo test --release --workspace; \
	else \
	  cargo test --release --workspace -- --skip needs_shared:: && \
	  echo "NOT RUN (they need $(SHARED): woofnette and dog-faces; README, Datasets): $$(cargo test --release --workspace -q -- --list 2>/dev/null | sed -n 's/^.*needs_shared::\([a-z0-9_]*\): test$$/\1/p' | tr '\n' ' ')"; \
	fi

# Speed, each figure beside a peer measured in the same run (see README).
# IMAGE: a photo; DATA: a folder of JPEGs (decoding, features, the soak's
# dataset); TRAIN_DATA: an ImageFolder (train/<class>/, val/<class>/) for
# distributed/bench.py, skipped when unset. Defaults: files in this repository.
IMAGE ?= examples/dog.jpg
DATA ?= examples
TRAIN_DATA ?=
bench: build-dev $(VENV)/.refs $(VENV)/.attr $(VENV)/.cam $(VENV)/.lucent
	$(BIN) bench --python $(PY)
	$(BIN) bench --python $(PY) --arch vgg16 --iters 5
	$(BIN) bench --python $(PY) --arch resnet50 --unit layer4.2 --iters 10 --no-occlusion
	$(BIN) bench --python $(PY) --arch resnet18 --unit layer3.1 --iters 10
	$(BIN) bench --python $(PY) --arch efficientnet_b0 --unit features.6.2 --iters 10
	$(BIN) bench --python $(PY) --arch convnext_tiny --unit features.5.4 --iters 10 --no-occlusion
	$(BIN) bench --python $(PY) --arch mobilenet_v3_large --unit features.13 --iters 10 --no-occlusion
	$(BIN) bench --python $(PY) --arch vit_b_16 --unit encoder.layers.encoder_layer_10 --iters 10 --no-occlusion
	$(BIN) bench --python $(PY) --arch swin_t --unit features.5.5 --iters 10 --no-occlusion
	$(BIN) bench --python $(PY) --methods --iters 5
	$(BIN) bench --python $(PY) --methods --arch vgg16 --iters 1
	$(BIN) bench --python $(PY) --cams --iters 3
	$(BIN) bench --python $(PY) --visualize --iters 3
	$(BIN) bench --python $(PY) --decode $(DATA)
	$(BIN) bench --features $(DATA) --iters 3
	$(DEV) bench-http --image $(IMAGE)
	$(PY) tests/bench_occlusion.py models/zfnet-woofnette $(IMAGE) $(BIN)
	$(if $(TRAIN_DATA),$(PY) distributed/bench.py --zfvis $(BIN) --data $(TRAIN_DATA),@echo "distributed/bench.py skipped: set TRAIN_DATA=DIR (train/<class>/, val/<class>/)")

# Reliability (see README): 10,000 mutated uploads over HTTP, 100,000
# through the decoders and 10,000 mutated files through the importer; 64 clients on loopback, 60 s measured after 60 s of warm-up.
fuzz: build-dev
	$(DEV) fuzz --cases 10000
	ZFVIS_FUZZ_CASES=100000 cargo test --release -p zfvis-core --test fuzz -- --nocapture
	ZFVIS_FUZZ_CASES=10000 cargo test --release -p zfvis-core --test import_fuzz -- --nocapture
soak: build-dev
	$(DEV) soak --clients 64 --warmup 60 --seconds 60 --images 200 --image $(IMAGE) --dataset $(DATA)

clean:
	cargo clean
