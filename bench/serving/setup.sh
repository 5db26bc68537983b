#!/usr/bin/env bash
# Sets up everything the serving benchmark needs besides Quiver's own .venv: the load generator (wrk)
# and one virtual environment per peer server, so their pins never fight Quiver's.
# Idempotent: a venv whose stamp matches its pins is kept.
set -euo pipefail
cd "$(dirname "$0")/../.."

PY="${PYTHON:-python3}"
# uvloop 0.22+ breaks MLServer 1.7.1's parallel workers (get_event_loop() in a fresh process raises).
MLSERVER_PINS=(mlserver==1.7.1 onnxruntime==1.32.0 uvloop==0.21.0)
LITSERVE_PINS=(litserve==0.2.19 onnxruntime==1.32.0 orjson==3.13.0 uvloop==0.23.0 httptools==0.9.0)

if ! command -v wrk >/dev/null 2>&1; then
    echo "setup: installing wrk (apt)"
    if [ "$(id -u)" = 0 ]; then APT=(apt-get); else APT=(sudo apt-get); fi
    "${APT[@]}" update -qq >/dev/null
    "${APT[@]}" install -y -qq wrk >/dev/null
fi

make_venv() {  # make_venv DIR PIN...
    local dir="$1"; shift
    local want="$*"
    if [ -x "$dir/bin/python" ] && [ "$(cat "$dir/.pins" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    echo "setup: creating $dir ($want)"
    rm -rf "$dir"
    "$PY" -m venv "$dir"
    "$dir/bin/pip" install -q --upgrade pip >/dev/null
    "$dir/bin/pip" install -q "$@"
    echo "$want" > "$dir/.pins"
}

make_venv .venv-mlserver "${MLSERVER_PINS[@]}"
make_venv .venv-litserve "${LITSERVE_PINS[@]}"
echo "setup: ok"
