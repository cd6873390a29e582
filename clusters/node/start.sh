#!/usr/bin/env bash
# Start Ray on a node (after setup.sh), for the launcher's head_start_ray_commands and
# worker_start_ray_commands. The dashboard listens on 127.0.0.1 only (`ray dashboard CLUSTER`
# forwards it). Extra arguments go to `ray start` (the AWS head's `--resources`, say).
#
#   start.sh head [RAY START ARGS...]
#   start.sh worker HEAD_IP [RAY START ARGS...]
#
# Doors locked: Ray's token authentication is on (RAY_AUTH_MODE=token, from setup.sh's settings),
# with the token the cluster file mounts; a node without it refuses to start. This script never
# runs `ray stop`, which stops every Ray of this account on the machine (another user's or
# another cluster's, where the account is shared): it stops only the Ray it started itself, by
# the process id it recorded, whose daemons are all its children (`ray start --block`).
set -euo pipefail
. "$HOME/.clip-prompt-sweeps.env"       # setup.sh's: the venv's ray first on PATH, the token's place
ulimit -n 65536 2>/dev/null || true
role="${1:?start.sh head|worker HEAD_IP}"; shift
if [ "${RAY_AUTH_MODE:-}" != token ] || [ ! -s "${RAY_AUTH_TOKEN_PATH:-}" ]; then
    echo "start.sh: no Ray token at ${RAY_AUTH_TOKEN_PATH:-(unset)}; run \`ray get-auth-token --generate\`" \
         "where you run \`ray up\` (the cluster file mounts ~/.ray/auth_token), then \`ray up\` again" >&2
    exit 2
fi
chmod 600 "$RAY_AUTH_TOKEN_PATH"

STATE="$HOME/.clip-prompt-sweeps-ray"
mkdir -p "$STATE"
# a Ray this script started before (`ray up` again): stop it, and nothing else. After a reboot
# the recorded pid may be another process's, even this check's own (a booted node numbers its
# processes from 1 again, and `ray up` runs the same commands): only the watch below is stopped,
# a session leader (setsid) whose own argument is start-ray.
ours() {
    local pid
    pid="$(cat "$STATE/ray.pid" 2>/dev/null)" && [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [ "$(ps -o sid= -p "$pid" 2>/dev/null | tr -d ' ')" = "$pid" ] &&
        tr '\0' '\n' < "/proc/$pid/cmdline" 2>/dev/null | grep -qx -- start-ray
}
if ours; then
    # its process group: the watch, `ray start` and its daemons (gone since the check: nothing to stop)
    kill -TERM -- "-$(cat "$STATE/ray.pid")" 2>/dev/null || true
    for _ in $(seq 60); do kill -0 "$(cat "$STATE/ray.pid")" 2>/dev/null || break; sleep 1; done
fi
case "$role" in
    head) args=(--head --port=6379 --object-manager-port=8076 --dashboard-host=127.0.0.1
                --autoscaling-config="$HOME/ray_bootstrap_config.yaml") ;;
    worker) head_ip="${1:?start.sh worker HEAD_IP}"; shift
            args=(--address="$head_ip:6379" --object-manager-port=8076) ;;
    *) echo "start.sh: unknown role '$role'; use head or worker" >&2; exit 2 ;;
esac
# In a session of its own, so that it outlives the launcher's SSH connection. `ray stop` (which
# `ray down` runs) ends the daemons with SIGTERM, which `--block` takes for a graceful exit and
# goes on waiting: the watch below ends it once it has no daemon left.
: > "$STATE/ray.log"
export RAY_LOG_FILE="$STATE/ray.log"
setsid nohup bash -c '
    ray start "$@" --block &
    ray_pid=$!
    until grep -q "Ray runtime started" "$RAY_LOG_FILE"; do
        kill -0 "$ray_pid" 2>/dev/null || exit 1
        sleep 1
    done
    while kill -0 "$ray_pid" 2>/dev/null; do
        sleep 2
        pgrep -P "$ray_pid" > /dev/null || { kill "$ray_pid" 2>/dev/null; break; }
    done
    wait "$ray_pid"' start-ray "${args[@]}" "$@" > "$STATE/ray.log" 2>&1 < /dev/null &
echo "$!" > "$STATE/ray.pid"
for _ in $(seq 180); do
    grep -q "Ray runtime started" "$STATE/ray.log" && { cat "$STATE/ray.log"; exit 0; }
    kill -0 "$(cat "$STATE/ray.pid")" 2>/dev/null || break
    sleep 1
done
cat "$STATE/ray.log" >&2
echo "start.sh: Ray did not start on this node; see $STATE/ray.log" >&2
exit 1
