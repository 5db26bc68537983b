"""A small ONNX Runtime custom runtime for Seldon MLServer (runs inside ``.venv-mlserver``).

Model settings point ``implementation`` at ``mlserver_onnx.OnnxRuntime`` and ``parameters.uri`` at the
``.onnx`` file; ``parameters.extra.threads`` sets ONNX Runtime's intra-op threads. Inputs are decoded
with MLServer's own NumPy codec and every graph output is returned, as a user of MLServer would write it.
"""

from __future__ import annotations

import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class OnnxRuntime(MLModel):
    async def load(self) -> bool:
        uri = await get_model_uri(self._settings)
        extra = (self._settings.parameters.extra if self._settings.parameters else None) or {}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(extra.get("threads", 1))
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(uri, options, providers=["CPUExecutionProvider"])
        self._outputs = [o.name for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {request_input.name: NumpyCodec.decode_input(request_input) for request_input in payload.inputs}
        results = self._session.run(self._outputs, feeds)
        return InferenceResponse(
            model_name=self.name,
            id=payload.id,
            outputs=[NumpyCodec.encode_output(name, value) for name, value in zip(self._outputs, results, strict=True)],
        )
