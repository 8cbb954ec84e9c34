#!/usr/bin/env bash
# Builds a Debian bookworm image with Python 3.11 from this machine's own Debian mirror and
# imports it into the Docker engine, for machines where no image registry answers. The four
# Dockerfiles in docker/ build on it with `make images BASE=local`.
#
#   docker/base/make-base.sh [IMAGE]        (as root: debootstrap and chroot need it)
#
# - The mirror is read from the machine's apt sources (the deb822 file's `URIs:` line of the
#   bookworm suite, or a `deb` line of sources.list); MIRROR=... overrides it. It is never written
#   into the repository; inside the image it is the apt source, as debootstrap leaves it.
# - The CA bundle the machine's pip trusts (`pip config list`: cert; CA_BUNDLE=... overrides it)
#   is copied into the image, and PIP_CERT / SSL_CERT_FILE / REQUESTS_CA_BUNDLE point at it, so
#   that pip inside a build works behind a TLS-inspecting proxy as it does on the machine.
# - The image has `python3.11`, `python3` and `python` on PATH (venv and ensurepip included).
set -euo pipefail

IMAGE=${1:-${BASE_IMAGE:-olmo-k8s/base:bookworm-py311}}
SUITE=bookworm
DOCKER=${DOCKER:-docker}
CA_PATH_IN_IMAGE=/usr/local/share/ca-certificates/olmo-k8s-build-ca-bundle.crt

die() { echo "error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "make base-image needs root (debootstrap and chroot); run it as root or with sudo"
command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install -y debootstrap)"
"$DOCKER" info >/dev/null 2>&1 || die "no container engine answers '$DOCKER info' (make engine starts one)"

find_mirror() {
    local file uris suites
    # deb822 sources: the stanza whose Suites include bookworm (not -security / -updates only).
    for file in /etc/apt/sources.list.d/*.sources; do
        [ -f "$file" ] || continue
        uris=$(awk -v suite="$SUITE" '
            function found() { return u != "" && s ~ ("(^|[[:space:]])" suite "([[:space:]]|$)") }
            /^[[:space:]]*$/ { if (found()) { print u; done = 1; exit } u = ""; s = ""; next }
            /^URIs:/ { u = $2 }
            /^Suites:/ { s = $0; sub(/^Suites:[[:space:]]*/, "", s) }
            END { if (!done && found()) print u }' "$file")
        if [ -n "$uris" ]; then echo "$uris"; return; fi
    done
    # one-line sources.list format
    for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$file" ] || continue
        uris=$(awk -v suite="$SUITE" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/) { if ($(i+1) == suite) { print $i; exit } break } }' "$file")
        if [ -n "$uris" ]; then echo "$uris"; return; fi
    done
}

MIRROR=${MIRROR:-$(find_mirror)}
[ -n "$MIRROR" ] || die "no Debian $SUITE mirror in the apt sources; set MIRROR=http://..."

find_ca_bundle() {
    local cert
    cert=$(python3 -m pip config get global.cert 2>/dev/null || true)
    [ -n "$cert" ] || cert=$(python3 -m pip config list 2>/dev/null | sed -n "s/^[^=]*\.cert='\(.*\)'$/\1/p" | head -n1)
    [ -n "$cert" ] || cert=/etc/ssl/certs/ca-certificates.crt
    echo "$cert"
}
CA_BUNDLE=${CA_BUNDLE:-$(find_ca_bundle)}
[ -f "$CA_BUNDLE" ] || die "CA bundle $CA_BUNDLE not found; set CA_BUNDLE=/path/to/bundle.pem"

ROOTFS=$(mktemp -d "${TMPDIR:-/tmp}/olmo-base-rootfs.XXXXXX")
cleanup() {
    for m in proc sys dev; do umount -l "$ROOTFS/$m" 2>/dev/null || true; done
    rm -rf "$ROOTFS"
}
trap cleanup EXIT

echo "==> debootstrap --variant=minbase $SUITE (mirror from the apt sources)"
debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 \
    || { tail -n 30 "$ROOTFS.log" >&2; rm -f "$ROOTFS.log"; die "debootstrap failed"; }
rm -f "$ROOTFS.log"

echo "==> python3.11, venv and CA certificates"
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    sh -ec 'apt-get update -qq
            apt-get install -y -qq --no-install-recommends python3.11 python3.11-venv ca-certificates >/dev/null
            apt-get clean
            rm -rf /var/lib/apt/lists/*
            ln -sf /usr/bin/python3.11 /usr/local/bin/python3
            ln -sf /usr/bin/python3.11 /usr/local/bin/python'
: >"$ROOTFS/etc/resolv.conf"
install -D -m 0644 "$CA_BUNDLE" "$ROOTFS$CA_PATH_IN_IMAGE"

echo "==> docker import $IMAGE"
tar -C "$ROOTFS" -c . | "$DOCKER" import \
    --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change "ENV LANG=C.UTF-8" \
    --change "ENV PIP_CERT=$CA_PATH_IN_IMAGE" \
    --change "ENV SSL_CERT_FILE=$CA_PATH_IN_IMAGE" \
    --change "ENV REQUESTS_CA_BUNDLE=$CA_PATH_IN_IMAGE" \
    --change 'CMD ["python3"]' \
    --message "Debian $SUITE + Python 3.11 (olmo-k8s docker/base/make-base.sh)" \
    - "$IMAGE" >/dev/null
"$DOCKER" run --rm --network none "$IMAGE" python -c 'import sys, venv, ssl; print("base:", sys.version.split()[0])'
echo "$IMAGE"
