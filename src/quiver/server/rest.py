"""The Open Inference Protocol v2 REST adapter: HTTP requests in, data plane calls, HTTP responses out."""

from __future__ import annotations

import math

from quiver.errors import InvalidInput, NotFound, Unavailable
from quiver.http.router import Router
from quiver.http.server import json_response
from quiver.http.types import Request, Response
from quiver.metrics import REGISTRY
from quiver.protocol.codec import HEADER_LENGTH, decode_request, encode_response, parse_json
from quiver.server.dataplane import DataPlane

_OK = Response(200, b"")
_BINARY = "application/octet-stream"


class RestApi:
    """Registers the V2 routes (plus repository, statistics and metrics extensions) on a router."""

    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane

    def register(self, router: Router) -> None:
        add = router.add
        add("GET", "/v2/health/live", self.live)
        add("GET", "/v2/health/ready", self.ready)
        add("GET", "/v2", self.server_metadata)
        add("GET", "/metrics", self.metrics)
        add("GET", "/v2/repository/index", self.repository_index)
        add("POST", "/v2/repository/index", self.repository_index)
        add("POST", "/v2/repository/models/{model}/load", self.load)
        add("POST", "/v2/repository/models/{model}/unload", self.unload)
        add("GET", "/v2/models/stats", self.statistics)
        for prefix in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
            add("GET", prefix, self.model_metadata)
            add("GET", prefix + "/ready", self.model_ready)
            add("GET", prefix + "/config", self.model_config)
            add("GET", prefix + "/stats", self.statistics)
            add("POST", prefix + "/infer", self.infer)

    # ---- health and metadata

    async def live(self, request: Request) -> Response:
        return json_response({"live": self.dataplane.live()})

    async def ready(self, request: Request) -> Response:
        ready, body = self.dataplane.ready()
        return json_response(body, 200 if ready else 503)

    async def server_metadata(self, request: Request) -> Response:
        return json_response(self.dataplane.server_metadata())

    async def model_metadata(self, request: Request) -> Response:
        params = request.path_params
        return json_response(self.dataplane.model_metadata(params["model"], params.get("version")))

    async def model_ready(self, request: Request) -> Response:
        params = request.path_params
        name, version = params["model"], params.get("version")
        if self.dataplane.model_ready(name, version):
            return json_response({"name": name, "ready": True})
        self.dataplane.model_metadata(name, version)  # raises the reason: unknown (404) or not ready (503)
        raise Unavailable(f"model '{name}' is not ready")

    async def model_config(self, request: Request) -> Response:
        params = request.path_params
        return json_response(self.dataplane.model_config(params["model"], params.get("version")))

    async def statistics(self, request: Request) -> Response:
        params = request.path_params
        return json_response(self.dataplane.statistics(params.get("model"), params.get("version")))

    async def metrics(self, request: Request) -> Response:
        return Response(200, REGISTRY.render(), "text/plain; version=0.0.4; charset=utf-8")

    # ---- inference

    async def infer(self, request: Request) -> Response:
        header = request.headers.get(HEADER_LENGTH)
        header_length: int | None = None
        if header is not None:
            if not header.isdigit():
                raise InvalidInput(f"Inference-Header-Content-Length must be a number of bytes, got {header!r}")
            header_length = int(header)
        infer_request = decode_request(request.body, header_length)
        timeout_ms = request.headers.get("quiver-timeout-ms")
        if timeout_ms is not None:
            infer_request.timeout_s = _timeout_header(timeout_ms)
        params = request.path_params
        response = await self.dataplane.infer(params["model"], params.get("version"), infer_request)
        body, json_length = encode_response(response)
        if json_length is None:
            return Response(200, body)
        return Response(200, body, _BINARY, (("Inference-Header-Content-Length", str(json_length)),))

    # ---- repository

    async def repository_index(self, request: Request) -> Response:
        ready_only = False
        if request.body:
            doc = parse_json(request.body)
            if not isinstance(doc, dict):
                raise InvalidInput('repository index body must be a JSON object such as {"ready": true}')
            ready_only = bool(doc.get("ready", False))
        return json_response(self.dataplane.repository_index(ready_only))

    async def load(self, request: Request) -> Response:
        await self.dataplane.load(request.path_params["model"])
        return _OK

    async def unload(self, request: Request) -> Response:
        name = request.path_params["model"]
        if name not in self.dataplane.manager.names():
            raise NotFound(f"unknown model '{name}'")
        await self.dataplane.unload(name)
        return _OK


def _timeout_header(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise InvalidInput(f"Quiver-Timeout-Ms must be a positive number of milliseconds, got {text!r}")
    return value / 1e3
