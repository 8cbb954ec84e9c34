# The operator image: the kopf operator for OLMoJob (services/operator) with kopf, the
# Kubernetes client and pyyaml. No torch, no olmo-k8s: the operator never imports them.
#
#   make image-operator                     (docker/build-images.sh: the same build arguments)
#   docker build -f docker/operator.Dockerfile -t olmo-k8s/operator:dev .   (from the repo root)

ARG PYTHON_IMAGE=python:3.11.15-slim-bookworm@sha256:d29f48a31a8b408ed19272ca1e7b10ebae13b240a27e862d3d4217c528e2e0c3

# ---- build: a virtual environment holding services/operator and its dependencies -------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Third-party dependencies first, from their lock alone (make lock: every version and file hash
# pinned, nothing resolved here): a code change keeps this layer. pip and the build tools first.
COPY locks/build.txt locks/operator.txt /src/locks/
RUN pip install --require-hashes --no-deps -r locks/build.txt \
    && pip install --require-hashes --no-deps -r locks/operator.txt
COPY services/operator /src/services/operator
# The operator as a wheel, installed in the runtime stage on top of the unchanged environment;
# built with the locked setuptools (no build isolation, which would fetch an unpinned one).
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /wheels ./services/operator

# ---- runtime ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
RUN groupadd --gid 10001 olmo \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/olmo --shell /usr/sbin/nologin olmo
COPY --from=build /opt/venv /opt/venv
COPY --from=build /wheels /tmp/wheels
# pip check, except kubernetes' declared python-dateutil>=3 (overridden to 2.9: docker/lock.py).
RUN /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps --no-index /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels \
    && { /opt/venv/bin/pip check || :; } \
       | { grep -v -e '^kubernetes [0-9.]* has requirement python-dateutil>=3' -e '^No broken' || :; } >/tmp/pip-check \
    && if [ -s /tmp/pip-check ]; then cat /tmp/pip-check; exit 1; fi \
    && rm /tmp/pip-check
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/home/olmo \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
# Numeric, so that the kubelet can verify runAsNonRoot without reading /etc/passwd.
USER 10001:10001
ENTRYPOINT ["olmo-operator"]
# The chart passes its own arguments (namespaces, peering, ports); bare `docker run` starts it.
CMD ["run"]
# Labels last: a new VERSION or REVISION (every commit) rebuilds no layer above them.
ARG PYTHON_IMAGE
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="olmo-k8s-operator" \
      org.opencontainers.image.description="Kubernetes operator (kopf) for the OLMoJob custom resource" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
