#!/usr/bin/env bash
# Make sure a Docker daemon answers on this machine, offline (servebench issue 18).
#
#   containers/dockerd.sh          install Debian's docker.io when dockerd is absent, start
#                                  dockerd (root, overlay2) when no daemon answers, wait for it
#   containers/dockerd.sh status   say whether a daemon answers and who started it
#   containers/dockerd.sh stop     stop the dockerd that THIS script started (and nothing else)
#
# Idempotent: a daemon that answers already (ours or anyone's) is left alone. The PID of the
# dockerd we start is kept in $SERVEBENCH_DOCKERD_PIDFILE; `stop` only signals that PID, and only
# while /proc/<pid>/exe is still a dockerd.
# /usr/local/bin/docker on this machine is a client only (no daemon): the daemon, containerd and
# runc come from Debian's docker.io package. Builds use the legacy builder (DOCKER_BUILDKIT=0):
# neither buildx nor a BuildKit image can be fetched here.
set -euo pipefail

PIDFILE=${SERVEBENCH_DOCKERD_PIDFILE:-/var/run/servebench-dockerd.pid}
LOGFILE=${SERVEBENCH_DOCKERD_LOG:-/var/log/servebench-dockerd.log}
WAIT_S=${SERVEBENCH_DOCKERD_WAIT_S:-60}
STORAGE_DRIVER=${SERVEBENCH_DOCKERD_STORAGE_DRIVER:-overlay2}

die() { echo "dockerd.sh: $*" >&2; exit 1; }
answers() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }
our_pid() {
    # The PID we recorded, if that process is still a dockerd.
    [ -f "$PIDFILE" ] || return 1
    local pid
    pid=$(cat "$PIDFILE")
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [ "$(basename "$(readlink "/proc/$pid/exe" 2>/dev/null || true)")" = dockerd ] || return 1
    echo "$pid"
}

install_docker() {
    [ "$(id -u)" = 0 ] || die "dockerd is not installed and installing it needs root (apt-get install docker.io)"
    command -v apt-get >/dev/null || die "dockerd is not installed and there is no apt-get to install docker.io with"
    echo "dockerd.sh: installing Debian's docker.io (apt-get)" >&2
    # Keep apt's maintainer scripts from starting the daemon themselves (invoke-rc.d honours
    # policy-rc.d): the daemon is started below, by this script, so that `stop` knows it is ours.
    local policy=/usr/sbin/policy-rc.d created=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        created=1
    fi
    local status=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker.io \
        >>"$LOGFILE" 2>&1 || {
        DEBIAN_FRONTEND=noninteractive apt-get update >>"$LOGFILE" 2>&1 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker.io \
                >>"$LOGFILE" 2>&1
    } || status=$?
    [ "$created" = 1 ] && rm -f "$policy"
    [ "$status" = 0 ] || die "apt-get install docker.io failed (exit $status); see $LOGFILE"
    command -v dockerd >/dev/null || die "docker.io installed but there is no dockerd on PATH"
}

start() {
    if answers; then
        if pid=$(our_pid); then
            echo "dockerd.sh: dockerd answers (started by this script, pid $pid)"
        else
            echo "dockerd.sh: a Docker daemon answers already (not started by this script; left alone)"
        fi
        return 0
    fi
    mkdir -p "$(dirname "$LOGFILE")"
    command -v dockerd >/dev/null || install_docker
    command -v docker >/dev/null || die "dockerd is installed but there is no docker client on PATH"
    [ "$(id -u)" = 0 ] || die "no Docker daemon answers and starting dockerd needs root"
    if pid=$(our_pid); then
        echo "dockerd.sh: our dockerd (pid $pid) runs but does not answer yet; waiting" >&2
    else
        if [ -S /var/run/docker.sock ] && pgrep -x dockerd >/dev/null 2>&1; then
            die "a dockerd runs (not started by this script) but does not answer; not touching it"
        fi
        echo "dockerd.sh: starting dockerd (storage driver $STORAGE_DRIVER, log $LOGFILE)" >&2
        # setsid: the daemon outlives this script and the caller's process group. Every file
        # descriptor but 0-2 is closed first: a caller's lock (`flock LOCK containers/dockerd.sh`)
        # would otherwise be held by the daemon for as long as it runs.
        (
            for fd in /proc/$BASHPID/fd/*; do
                fd=${fd##*/}
                [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null
            done
            exec setsid dockerd --storage-driver "$STORAGE_DRIVER" >>"$LOGFILE" 2>&1 </dev/null
        ) &
        pid=$!
        echo "$pid" >"$PIDFILE"
    fi
    local waited=0
    until answers; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$PIDFILE"
            echo "--- last lines of $LOGFILE:" >&2
            tail -n 15 "$LOGFILE" >&2 || true
            die "dockerd exited before answering (see $LOGFILE)"
        fi
        [ "$waited" -lt "$WAIT_S" ] || die "dockerd (pid $pid) did not answer within ${WAIT_S}s (see $LOGFILE)"
        sleep 1
        waited=$((waited + 1))
    done
    echo "dockerd.sh: dockerd answers (pid $pid, ${waited}s): $(docker info --format '{{.ServerVersion}} {{.Driver}} cgroup v{{.CgroupVersion}}')"
}

stop() {
    local pid
    if ! pid=$(our_pid); then
        rm -f "$PIDFILE"
        echo "dockerd.sh: no dockerd started by this script runs; nothing stopped"
        return 0
    fi
    kill -TERM "$pid"
    for _ in $(seq 1 30); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 1
    done
    kill -0 "$pid" 2>/dev/null && die "dockerd (pid $pid) still runs 30s after SIGTERM"
    rm -f "$PIDFILE"
    echo "dockerd.sh: stopped dockerd (pid $pid)"
}

status() {
    if answers; then
        if pid=$(our_pid); then echo "running (started by this script, pid $pid)"; else echo "running (not started by this script)"; fi
    else
        echo "not answering"
        return 3
    fi
}

case "${1:-start}" in
start) start ;;
stop) stop ;;
status) status ;;
*) die "unknown command '${1}' (start, status, stop)" ;;
esac
