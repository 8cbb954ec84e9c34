#!/usr/bin/env bash
# The container engine for `make images` and the image tests.
#
#   docker/engine.sh ensure   a Docker engine answers `docker info`, or this starts one: as root,
#                             Debian's docker.io (and debootstrap, for `make base-image`) are
#                             installed when missing, and dockerd starts with no bridge and no
#                             iptables rules (containers use --network host or none: no network
#                             in a private address range is ever created)
#   docker/engine.sh stop     stops the engine, only if `ensure` started it
#
# An engine that already answers (Docker Desktop, a systemd service, rootless Docker) is used as
# it is and never stopped.
set -euo pipefail

DOCKER=${DOCKER:-docker}
STATE_DIR=${OLMO_ENGINE_STATE_DIR:-/run/olmo-k8s}
PIDFILE=$STATE_DIR/dockerd.pid
LOG=$STATE_DIR/dockerd.log
START_TIMEOUT=${OLMO_ENGINE_START_TIMEOUT:-60}

say() { echo "engine: $*" >&2; }
die() { echo "error: $*" >&2; exit 1; }

answers() { "$DOCKER" info >/dev/null 2>&1; }

install_packages() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        command -v dockerd >/dev/null || die "no Docker engine: '$DOCKER info' fails and dockerd is not installed.
Install Docker (on Debian, as root: apt-get install docker.io debootstrap) and start it,
or run the same stack without containers: make train-local"
        return 0
    fi
    say "installing ${missing[*]} from Debian's packages"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure() {
    if answers; then
        return 0
    fi
    command -v "$DOCKER" >/dev/null || [ "$(id -u)" = 0 ] || die "'$DOCKER' is not installed"
    install_packages
    answers && return 0
    [ "$(id -u)" = 0 ] || die "'$DOCKER info' fails: no engine answers, and starting dockerd needs root.
Start your Docker engine, or run the same stack without containers: make train-local"
    mkdir -p "$STATE_DIR"
    say "starting dockerd (--bridge=none --iptables=false; log: $LOG)"
    nohup dockerd --bridge=none --iptables=false --ip-masq=false >"$LOG" 2>&1 &
    echo $! >"$PIDFILE"
    local waited=0
    until answers; do
        if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
            tail -n 20 "$LOG" >&2
            rm -f "$PIDFILE"
            die "dockerd exited at start (log above: $LOG)"
        fi
        [ "$waited" -ge "$START_TIMEOUT" ] && { tail -n 20 "$LOG" >&2; die "dockerd did not answer within ${START_TIMEOUT}s"; }
        sleep 1
        waited=$((waited + 1))
    done
    # The Debian client (/usr/bin/docker) may be older than one already on PATH: either works.
    say "dockerd $("$DOCKER" version --format '{{.Server.Version}}' 2>/dev/null) is up"
}

stop() {
    [ -f "$PIDFILE" ] || return 0
    local pid
    pid=$(cat "$PIDFILE")
    if kill -0 "$pid" 2>/dev/null; then
        say "stopping dockerd ($pid)"
        kill "$pid"
        for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
}

case "${1:-}" in
    ensure) ensure ;;
    stop) stop ;;
    *) echo "usage: $0 ensure|stop" >&2; exit 2 ;;
esac
