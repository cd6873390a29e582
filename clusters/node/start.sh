#!/usr/bin/env bash
# Start Ray on a node (after setup.sh), for the launcher's head_start_ray_commands and
# worker_start_ray_commands. The dashboard listens on 127.0.0.1 only (`ray dashboard CLUSTER`
# forwards it). Extra arguments go to `ray start` (the AWS head's `--resources`, say).
#
#   start.sh head [RAY START ARGS...]
#   start.sh worker HEAD_IP [RAY START ARGS...]
set -euo pipefail
. "$HOME/.clip-prompt-sweeps.env"       # setup.sh's: the venv's ray first on PATH
ulimit -n 65536 2>/dev/null || true
role="${1:?start.sh head|worker HEAD_IP}"; shift
ray stop
case "$role" in
    head) exec ray start --head --port=6379 --object-manager-port=8076 --dashboard-host=127.0.0.1 \
              --autoscaling-config="$HOME/ray_bootstrap_config.yaml" "$@" ;;
    worker) head_ip="${1:?start.sh worker HEAD_IP}"; shift
            exec ray start --address="$head_ip:6379" --object-manager-port=8076 "$@" ;;
    *) echo "start.sh: unknown role '$role'; use head or worker" >&2; exit 2 ;;
esac
