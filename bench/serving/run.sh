#!/usr/bin/env bash
# Issue 2's serving benchmark in one command: sets up peers and wrk, builds the models, runs every
# configuration under the benchmark lock, prints the table and writes bench/serving/RESULTS.md.
#   bench/serving/run.sh [--quick] [--duration S] [--servers quiver,mlserver,litserve] [--models mlp,minilm]
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ ! -x .venv/bin/python ]; then
    echo "bench/serving/run.sh: .venv is missing; create it first (make test / make serve)" >&2
    exit 2
fi
bash bench/serving/setup.sh 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec flock /tmp/quiver-bench.lock .venv/bin/python -m bench.serving.run "$@"
