"""Router: static and ``{placeholder}`` routes, 404 / 405, and the resolved-path cache."""

from __future__ import annotations

import pytest

from quiver.errors import MethodNotAllowed, NotFound, Overloaded
from quiver.http import Request, Response, Router, default_error_body


async def one(request: Request) -> Response:
    return Response(200, b"one")


async def two(request: Request) -> Response:
    return Response(200, b"two")


def make_router() -> Router:
    router = Router()
    router.add("GET", "/v2/health/live", one)
    router.add("get", "/v2/models/{model}", one)  # the method is upper-cased
    router.add("GET", "/v2/models/{model}/versions/{version}/ready", one)
    router.add("POST", "/v2/models/{model}/versions/{version}/ready", two)
    router.add("GET", "/v2/models/stats", two)  # a static path wins over a placeholder that also matches
    router.add("GET", "/files/a.b", two)
    return router


def test_static_route() -> None:
    route, params = make_router().match("GET", "/v2/health/live")
    assert route.handler is one and params == {}
    assert route.method == "GET" and route.pattern == "/v2/health/live"


def test_dynamic_route_params_and_methods() -> None:
    router = make_router()
    route, params = router.match("GET", "/v2/models/fraud/versions/3/ready")
    assert route.handler is one and params == {"model": "fraud", "version": "3"}
    route, params = router.match("POST", "/v2/models/fraud/versions/3/ready")
    assert route.handler is two and params == {"model": "fraud", "version": "3"}
    route, params = router.match("GET", "/v2/models/fraud")
    assert route.handler is one and params == {"model": "fraud"}


def test_static_path_wins_over_a_placeholder() -> None:
    route, params = make_router().match("GET", "/v2/models/stats")
    assert route.handler is two and params == {}


@pytest.mark.parametrize(
    "path", ["/v2/models/a/b", "/v2/models/", "/v2/models", "/v2/health/live/", "/files/aXb", "/nope"]
)
def test_unknown_paths_are_not_found(path: str) -> None:
    with pytest.raises(NotFound, match=f"no route for GET {path}") as info:
        make_router().match("GET", path)
    assert info.value.status == 404


def test_wrong_method_lists_the_allowed_ones() -> None:
    router = make_router()
    with pytest.raises(
        MethodNotAllowed, match="DELETE is not allowed on /v2/models/m/versions/1/ready; allowed: GET, POST"
    ) as info:
        router.match("DELETE", "/v2/models/m/versions/1/ready")
    assert info.value.status == 405
    with pytest.raises(MethodNotAllowed, match="allowed: GET"):
        router.match("POST", "/v2/health/live")


def test_repeated_paths_resolve_the_same_and_params_are_not_shared() -> None:
    router = make_router()
    _, first = router.match("GET", "/v2/models/m/versions/2/ready")
    first["model"] = "changed by a handler"
    _, again = router.match("GET", "/v2/models/m/versions/2/ready")
    assert again == {"model": "m", "version": "2"}
    _, other = router.match("GET", "/v2/models/n/versions/5/ready")
    assert other == {"model": "n", "version": "5"}


def test_adding_a_route_after_matching_takes_effect() -> None:
    router = make_router()
    with pytest.raises(MethodNotAllowed):
        router.match("DELETE", "/v2/models/m")
    router.add("DELETE", "/v2/models/{model}", two)
    route, params = router.match("DELETE", "/v2/models/m")
    assert route.handler is two and params == {"model": "m"}


def test_error_body_default_and_custom() -> None:
    router = Router()
    router.add("GET", "/a", one)
    router.add("GET", "/b", one, error_body=lambda e: b"plain " + e.message.encode())
    error = Overloaded("full")
    assert router.match("GET", "/a")[0].error_body(error) == b'{"error":"full"}' == default_error_body(error)
    assert router.match("GET", "/b")[0].error_body(error) == b"plain full"
