#!/usr/bin/env bash
# Regenerate the committed Python modules from grpc_predict_v2.proto (needs the dev extra: grpcio-tools).
#
#   src/quiver/grpc/generate.sh            # from anywhere; uses .venv/bin/python when present
#
# The messages are registered in a private descriptor pool, not protobuf's default one: tritonclient.grpc
# (and any other client built from the same .proto) defines the same `inference.*` names, and two files
# defining one name in the default pool cannot be imported into one process. The wire format only
# carries the service path and field numbers, so a private pool changes nothing for clients.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$(cd "$here/../.." && pwd)"
root="$(cd "$src/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
[ -x "$python" ] || python=python3

"$python" -m grpc_tools.protoc -I "$src" \
    --python_out="$src" --pyi_out="$src" --grpc_python_out="$src" \
    "$src/quiver/grpc/grpc_predict_v2.proto"

pb2="$here/grpc_predict_v2_pb2.py"
sed -i 's/_descriptor_pool\.Default()/_descriptor_pool.DescriptorPool()/' "$pb2"
grep -q '_descriptor_pool.DescriptorPool()' "$pb2" || { echo "generate.sh: private-pool rewrite failed" >&2; exit 1; }
echo "generated: $(cd "$here" && ls grpc_predict_v2_pb2*.py*)"
