#!/usr/bin/env bash
# Builds the images named on the command line (trainer dataprep evalworker operator) from
# docker/<name>.Dockerfile, tagged $IMAGE_REPO/<name>:$VERSION. `make images` calls it.
#
#   BASE=official  (default) the Python base image pinned in the Dockerfiles (a registry pull);
#                  torch from PyTorch's index (CUDA 12.6 for the trainer, CPU for the eval worker)
#   BASE=local     the offline base of `make base-image` ($BASE_IMAGE); torch from the local wheel
#                  folder that this machine's pip configuration names (find-links), served to the
#                  build on loopback, when it holds torch==$TORCH_VERSION (then TORCH_VARIANT is
#                  that wheel's local version: cpu for torch-2.13.0+cpu); else from the index
#
# Every image installs its locks (locks/, `make lock`) with pip's --require-hashes: torch from
# locks/torch-$TORCH_VARIANT.txt, so a wheel that is not the locked build fails the build.
# Other inputs (all optional): TORCH_VARIANT, TORCH_INDEX_URL, TORCH_FIND_LINKS (a URL the build can reach),
# TORCH_WHEELS_PORT (the loopback port the local wheel folder is served on, 38471),
# DOCKER_BUILD_ARGS (more `docker build` options), VERSION, REVISION, IMAGE_REPO, DOCKER.
# Builds use the classic builder (DOCKER_BUILDKIT=0: no buildx needed) and the host's network
# (pip reaches the package indexes as the machine does; no container network is created).
set -euo pipefail
cd "$(dirname "$0")/.."

DOCKER=${DOCKER:-docker}
IMAGE_REPO=${IMAGE_REPO:-olmo-k8s}
VERSION=${VERSION:-dev}
REVISION=${REVISION:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
BASE=${BASE:-official}
BASE_IMAGE=${BASE_IMAGE:-olmo-k8s/base:bookworm-py311}
TORCH_VERSION=$(sed -n 's/^torch = \["torch==\([^"]*\)"\]$/\1/p' pyproject.toml)
KNOWN="trainer dataprep evalworker operator"

die() { echo "error: $*" >&2; exit 1; }
[ -n "$TORCH_VERSION" ] || die "pyproject.toml: no torch extra of the form torch = [\"torch==X\"]"
[ $# -gt 0 ] || set -- $KNOWN
for name in "$@"; do
    case " $KNOWN " in *" $name "*) ;; *) die "unknown image '$name' (one of: $KNOWN)";; esac
done
"$DOCKER" info >/dev/null 2>&1 || die "'$DOCKER info' failed: no container engine answers.
Start one (as root: make engine), or run the same stack without containers: make train-local"

args=(--build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION")
case "$BASE" in
    official) ;;
    local)
        "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1 \
            || die "the local base image $BASE_IMAGE does not exist: make base-image"
        args+=(--build-arg "PYTHON_IMAGE=$BASE_IMAGE")
        ;;
    *) die "BASE=$BASE: use official or local" ;;
esac

# torch from a local wheel folder (the machine's pip find-links), served on loopback.
server_pid=
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true; }
trap cleanup EXIT
wants_torch=0
for name in "$@"; do case "$name" in trainer|evalworker) wants_torch=1;; esac; done
if [ "$BASE" = local ] && [ -z "${TORCH_FIND_LINKS:-}" ] && [ "$wants_torch" = 1 ]; then
    links=$(python3 -m pip config list 2>/dev/null | sed -n "s/^[^=]*\.find-links='\(.*\)'$/\1/p" | head -n1)
    links=${links#file://}
    wheel=$( [ -n "$links" ] && compgen -G "$links/torch-${TORCH_VERSION}+*.whl" | head -n1 || :)
    if [ -n "$wheel" ]; then
        # the lock of the wheel's build: torch-2.13.0+cpu-cp311-... is TORCH_VARIANT=cpu
        wheel=${wheel##*/}; wheel=${wheel#*+}; TORCH_VARIANT=${TORCH_VARIANT:-${wheel%%-*}}
        # A fixed port: the URL is a build argument, and a new value would invalidate the
        # build cache of every layer after it (torch, DeepSpeed, the dependencies).
        port=${TORCH_WHEELS_PORT:-38471}
        python3 -m http.server --bind 127.0.0.1 --directory "$links" "$port" >/dev/null 2>&1 &
        server_pid=$!
        for _ in $(seq 50); do
            kill -0 "$server_pid" 2>/dev/null || die "cannot serve $links on 127.0.0.1:$port (in use?): set TORCH_WHEELS_PORT"
            python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/')" 2>/dev/null && break
            sleep 0.1
        done
        TORCH_FIND_LINKS="http://127.0.0.1:$port/"
        echo "==> torch $TORCH_VERSION ($TORCH_VARIANT) from $links (pip's find-links), served at $TORCH_FIND_LINKS"
    fi
fi
if [ -n "${TORCH_FIND_LINKS:-}" ]; then args+=(--build-arg "TORCH_FIND_LINKS=$TORCH_FIND_LINKS"); fi
if [ -n "${TORCH_VARIANT:-}" ]; then args+=(--build-arg "TORCH_VARIANT=$TORCH_VARIANT"); fi
if [ -n "${TORCH_INDEX_URL:-}" ]; then args+=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL"); fi

# shellcheck disable=SC2206
extra=(${DOCKER_BUILD_ARGS:-})
for name in "$@"; do
    tag="$IMAGE_REPO/$name:$VERSION"
    echo "==> $tag (docker/$name.Dockerfile, BASE=$BASE)"
    start=$(date +%s)
    DOCKER_BUILDKIT=0 "$DOCKER" build --network host --file "docker/$name.Dockerfile" \
        --tag "$tag" "${args[@]}" "${extra[@]}" .
    size=$("$DOCKER" image inspect --format '{{.Size}}' "$tag")
    echo "==> $tag built in $(( $(date +%s) - start ))s, $(( size / 1000000 )) MB"
done
