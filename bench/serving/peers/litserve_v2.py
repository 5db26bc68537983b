"""LitServe serving an ONNX model on the Open Inference Protocol V2 JSON body (runs in ``.venv-litserve``).

    python litserve_v2.py --model mlp --onnx model.onnx --port 8000 [--max-batch-size 32 --batch-timeout 0.002]

The API is mounted at ``/v2/models/<model>/infer`` and accepts
``{"inputs": [{"name", "shape", "datatype", "data"}]}``; it answers a V2 response with every output.
"""

from __future__ import annotations

import argparse

import litserve as ls
import numpy as np
import onnxruntime as ort

_DTYPES = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32}
_V2_NAMES = {np.dtype(v).name: k for k, v in _DTYPES.items()}


class OnnxV2API(ls.LitAPI):
    def __init__(self, model: str, onnx_path: str, threads: int, **kwargs: object) -> None:
        super().__init__(api_path=f"/v2/models/{model}/infer", **kwargs)  # type: ignore[arg-type]
        self.model, self.onnx_path, self.threads = model, onnx_path, threads

    def setup(self, device: str) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(self.onnx_path, options, providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]

    def decode_request(self, request: dict) -> dict[str, np.ndarray]:
        return {
            i["name"]: np.asarray(i["data"], dtype=_DTYPES[i["datatype"]]).reshape(i["shape"])
            for i in request["inputs"]
        }

    def batch(self, inputs: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        return {name: np.concatenate([x[name] for x in inputs]) for name in inputs[0]}  # [n, ...]

    def predict(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(self.outputs, feeds)

    def unbatch(self, outputs: list[np.ndarray]) -> list[list[np.ndarray]]:
        return [[o[i : i + 1] for o in outputs] for i in range(len(outputs[0]))]

    def encode_response(self, outputs: list[np.ndarray]) -> dict:
        return {
            "model_name": self.model,
            "outputs": [
                {"name": name, "shape": list(o.shape), "datatype": _V2_NAMES[o.dtype.name], "data": o.ravel().tolist()}
                for name, o in zip(self.outputs, outputs, strict=True)
            ],
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--onnx", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="inference worker processes")
    parser.add_argument("--max-batch-size", type=int, default=1)
    parser.add_argument("--batch-timeout", type=float, default=0.0, help="seconds")
    args = parser.parse_args()
    api = OnnxV2API(
        args.model, args.onnx, args.threads, max_batch_size=args.max_batch_size, batch_timeout=args.batch_timeout
    )
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=args.workers, timeout=60)
    server.run(host="127.0.0.1", port=args.port, log_level="warning", generate_client_file=False)


if __name__ == "__main__":
    main()
