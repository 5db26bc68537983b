"""Method + path routing with ``{name}`` placeholders; static paths resolve with one dict lookup."""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson

from quiver.errors import MethodNotAllowed, NotFound, QuiverError
from quiver.http.types import ErrorBody, Handler

_CACHE_SIZE = 4096  # distinct dynamic paths remembered (model names x routes)
_PLACEHOLDER = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_]*)\}")


def default_error_body(error: QuiverError) -> bytes:
    return orjson.dumps({"error": error.message})


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    pattern: str
    handler: Handler
    error_body: ErrorBody


class Router:
    """Routes requests to handlers.

    >>> router = Router()
    >>> router.add("GET", "/v2/models/{model}/ready", handler)  # doctest: +SKIP
    >>> route, params = router.match("GET", "/v2/models/fraud/ready")  # doctest: +SKIP
    """

    def __init__(self) -> None:
        self._static: dict[str, dict[str, Route]] = {}
        self._dynamic: list[tuple[re.Pattern[str], dict[str, Route]]] = []
        self._dynamic_index: dict[str, dict[str, Route]] = {}
        # path -> (methods, params): a request path seen once resolves with one lookup after that
        self._resolved: dict[str, tuple[dict[str, Route], dict[str, str]]] = {}

    def add(self, method: str, pattern: str, handler: Handler, error_body: ErrorBody | None = None) -> None:
        route = Route(method.upper(), pattern, handler, error_body or default_error_body)
        if "{" not in pattern:
            self._static.setdefault(pattern, {})[route.method] = route
            return
        methods = self._dynamic_index.get(pattern)
        if methods is None:
            regex = (
                "^"
                + _PLACEHOLDER.sub(r"(?P<\1>[^/]+)", re.escape(pattern).replace(r"\{", "{").replace(r"\}", "}"))
                + "$"
            )
            methods = {}
            self._dynamic_index[pattern] = methods
            self._dynamic.append((re.compile(regex), methods))
        methods[route.method] = route
        self._resolved.clear()

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        """Return the route and its path parameters, or raise NotFound / MethodNotAllowed."""
        methods = self._static.get(path)
        params: dict[str, str] = {}
        if methods is None:
            cached = self._resolved.get(path)
            if cached is not None:
                methods, params = cached[0], dict(cached[1])
            else:
                for regex, candidate in self._dynamic:
                    found = regex.match(path)
                    if found:
                        methods, params = candidate, found.groupdict()
                        if len(self._resolved) < _CACHE_SIZE:
                            self._resolved[path] = (methods, dict(params))
                        break
        if methods is None:
            raise NotFound(f"no route for {method} {path}")
        route = methods.get(method)
        if route is None:
            allowed = ", ".join(sorted(methods))
            raise MethodNotAllowed(f"{method} is not allowed on {path}; allowed: {allowed}")
        return route, params
