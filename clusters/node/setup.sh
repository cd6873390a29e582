#!/usr/bin/env bash
# Every node of a cluster: the project in a venv, CIFAR and the weights in the node's caches, and
# the settings every later login shell needs. One source for cluster.yaml (AWS) and
# clusters/onprem.yaml, so the two cannot drift apart. Safe to run again (`ray up` does).
#
#   setup.sh --storage URI [--venv DIR] [--fetch "ARGS"]
#     --storage  where sweeps keep trial state, shared by every node: s3://..., gs://...,
#                or file:///NFS/PATH
#     --venv     the node's venv (default ~/clip-prompt-sweeps-venv; made when absent)
#     --fetch    arguments of `python -m orchestrator fetch` (default --weights: CIFAR and
#                the weights; "--data synthetic" writes the smoke-test data, offline)
set -euo pipefail
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
VENV="$HOME/clip-prompt-sweeps-venv"
FETCH="--weights"
STORAGE=""
while [ $# -gt 0 ]; do
    case "$1" in
        --storage) STORAGE="$2"; shift 2 ;;
        --venv) VENV="$2"; shift 2 ;;
        --fetch) FETCH="$2"; shift 2 ;;
        *) echo "setup.sh: unknown argument '$1'; see the header of $0" >&2; exit 2 ;;
    esac
done
case "$STORAGE" in
    s3://*|gs://*|file:///*) ;;
    *) echo "setup.sh: --storage '$STORAGE' is not shared by every node; give s3://, gs:// or file:///NFS/PATH" >&2
       exit 2 ;;
esac

export PIP_DISABLE_PIP_VERSION_CHECK=1
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# `ray up` runs this on every node each time (and on a rebooted node again): pip runs only when
# this venv has not yet installed the project from here with this pyproject.toml (its
# dependencies). Code changes need no install: it is an editable one. A run that fails before
# the end writes no stamp, so the next one installs again; delete the stamp to force it.
STAMP="$VENV/.clip-prompt-sweeps-installed"
INSTALLED="$REPO $(sha256sum < "$REPO/pyproject.toml")"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$INSTALLED" ]; then
    # the build backend first, then the project built with it: an install that finds its
    # dependencies present asks no package index for anything
    "$VENV/bin/python" -m pip install -q "setuptools>=68"
    "$VENV/bin/python" -m pip install -q --no-build-isolation -e "$REPO"
    printf '%s\n' "$INSTALLED" > "$STAMP"
fi
# shellcheck disable=SC2086  # FETCH is a list of arguments
"$VENV/bin/python" -m orchestrator fetch $FETCH

# The settings of every login shell on this node (Ray's commands run in one). Values are quoted
# for the shell (printf %q): a path with `$(...)` in it stays a path, run at no login.
ENV_FILE="$HOME/.clip-prompt-sweeps.env"
{
    printf 'export PATH=%q:"$PATH"\n' "$VENV/bin"
    printf 'export ORCHESTRATOR_STORAGE_PATH=%q\n' "$STORAGE"
    # Ray's token authentication on every node and for every client (the driver too): the token
    # file comes with the cluster file's file_mounts (`ray get-auth-token --generate` makes it)
    printf 'export RAY_AUTH_MODE=token\n'
    printf 'export RAY_AUTH_TOKEN_PATH=%q\n' "$HOME/.clip-prompt-sweeps-ray-token"
} > "$ENV_FILE"
grep -qF ".clip-prompt-sweeps.env" "$HOME/.bashrc" 2>/dev/null ||
    printf '[ -f %q ] && . %q\n' "$ENV_FILE" "$ENV_FILE" >> "$HOME/.bashrc"
echo "node set up: venv $VENV, storage $STORAGE"
