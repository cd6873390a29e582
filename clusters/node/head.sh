#!/usr/bin/env bash
# The head node, after setup.sh: the MLflow tracking server on 127.0.0.1:5000 (never a public
# interface: reach it through `ray attach CLUSTER -p 5000`), and the head's login settings: the
# store, and the study's profile for `python -m orchestrator sweep NAME`.
#
#   head.sh --artifacts URI [--store DIR] [--database URI]
#     --artifacts  where the server keeps artifacts: s3://BUCKET/PATH or file:///NFS/PATH
#     --store      the folder of the server's log, and of its SQLite database unless --database
#                  (default ~/mlflow; only the server writes it)
#     --database   the server's database instead of SQLite: postgresql://USER@HOST:PORT/DB, the
#                  store MLflow recommends for a server that several sweeps or users write at once
#                  (docs/clusters.md, "Which MLflow store"). The password goes in ~/.pgpass, never here.
#   $MLFLOW_START_TIMEOUT  seconds to wait for the server to answer (default 300)
#   $MLFLOW_SERVER_ENABLE_JOB_EXECUTION  MLflow's GenAI job runner beside the server (default false)
set -euo pipefail
STORE="$HOME/mlflow"
ARTIFACTS=""
DATABASE=""
while [ $# -gt 0 ]; do
    case "$1" in
        --artifacts) ARTIFACTS="$2"; shift 2 ;;
        --store) STORE="$2"; shift 2 ;;
        --database) DATABASE="$2"; shift 2 ;;
        *) echo "head.sh: unknown argument '$1'; see the header of $0" >&2; exit 2 ;;
    esac
done
[ -n "$ARTIFACTS" ] || { echo "head.sh: give --artifacts s3://BUCKET/PATH or file:///NFS/PATH" >&2; exit 2; }
ENV_FILE="$HOME/.clip-prompt-sweeps.env"
. "$ENV_FILE"       # setup.sh's: the venv on PATH
answers() { python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:5000/health', timeout=2)" 2>/dev/null; }
case "$DATABASE" in
    "") DATABASE="sqlite:///$STORE/mlflow.db" ;;
    postgresql://*|postgresql+psycopg://*)
        python -c "import psycopg" 2>/dev/null || { echo "head.sh: --database $DATABASE needs PostgreSQL's driver" \
            "in the node's venv: pip install 'psycopg[binary]>=3.2'" >&2; exit 2; } ;;
    *) echo "head.sh: --database must be postgresql://USER@HOST:PORT/DB (or leave it out for SQLite)" >&2; exit 2 ;;
esac
mkdir -p "$STORE"
if ! answers; then
    # MLflow starts a GenAI job runner beside a server by default (3.18: six more processes, each
    # importing MLflow, polling while the server lives); a sweep's tracking server runs no jobs.
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}" \
    nohup mlflow server --host 127.0.0.1 --port 5000 --backend-store-uri "$DATABASE" \
        --artifacts-destination "$ARTIFACTS" > "$STORE/server.log" 2>&1 < /dev/null &
    SERVER=$!
    echo "$SERVER" > "$STORE/server.pid"
    # A busy head can take a minute to start the server's four workers (40 s seen under a loaded
    # test run): wait for as long as the server lives, up to a bound; one that exits says so at once.
    DEADLINE=$((SECONDS + ${MLFLOW_START_TIMEOUT:-300}))
    until answers; do
        kill -0 "$SERVER" 2>/dev/null || { echo "head.sh: the MLflow server exited; see $STORE/server.log" >&2; exit 1; }
        [ "$SECONDS" -lt "$DEADLINE" ] || {
            echo "head.sh: the MLflow server did not answer within ${MLFLOW_START_TIMEOUT:-300} s; see $STORE/server.log" >&2; exit 1; }
        sleep 1
    done
fi
grep -q MLFLOW_TRACKING_URI "$ENV_FILE" || echo 'export MLFLOW_TRACKING_URI=http://127.0.0.1:5000' >> "$ENV_FILE"
# `python -m orchestrator sweep NAME` on the head runs the study; the laptop default stays smoke
grep -q ORCHESTRATOR_PROFILE "$ENV_FILE" || echo 'export ORCHESTRATOR_PROFILE=full' >> "$ENV_FILE"
echo "MLflow server on http://127.0.0.1:5000 (database ${DATABASE%%\?*}, artifacts $ARTIFACTS)"
