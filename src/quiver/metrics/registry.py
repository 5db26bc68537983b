"""A small, fast Prometheus registry.

Quiver's hot paths run on one event loop, so metric updates are plain attribute arithmetic (no locks);
``observe`` on a histogram is a bisect plus two additions. Values touched from worker threads are updated
only through the event loop. The text exposition format is rendered on scrape.

>>> requests = REGISTRY.counter("quiver_requests_total", "Requests.", ("model", "outcome"))
>>> requests.labels("fraud", "success").inc()
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable

DEFAULT_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _label_text(names: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if math.isnan(value):
        return "NaN"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class _CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class _GaugeChild:
    __slots__ = ("_fn", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self._fn: Callable[[], float] | None = None

    def set(self, value: float) -> None:
        self.value = value

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount

    def set_function(self, fn: Callable[[], float]) -> None:
        """Read the value from ``fn`` at scrape time (queue depth, cache usage)."""
        self._fn = fn

    def read(self) -> float:
        return self._fn() if self._fn is not None else self.value


class _HistogramChild:
    __slots__ = ("_upper", "count", "counts", "sum")

    def __init__(self, upper: tuple[float, ...]) -> None:
        self._upper = upper
        self.counts = [0] * (len(upper) + 1)  # last slot is +Inf
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self._upper, value)] += 1
        self.count += 1
        self.sum += value


class _Family:
    kind = ""

    def __init__(self, name: str, doc: str, labelnames: Iterable[str]) -> None:
        self.name = name
        self.doc = doc
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], object] = {}

    def _new_child(self) -> object:
        raise NotImplementedError

    def _child(self, values: tuple[str, ...]) -> object:
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"metric {self.name}: expected labels {self.labelnames}, got {values}")
            child = self._children[values] = self._new_child()
        return child

    def remove(self, *values: str) -> None:
        self._children.pop(tuple(values), None)

    def render(self) -> list[str]:
        doc = self.doc.replace("\\", "\\\\").replace("\n", "\\n")  # HELP escapes \ and newline only
        lines = [f"# HELP {self.name} {doc}", f"# TYPE {self.name} {self.kind}"]
        for values, child in sorted(self._children.items()):
            lines.extend(self._render_child(values, child))
        return lines

    def _render_child(self, values: tuple[str, ...], child: object) -> list[str]:
        raise NotImplementedError


class Counter(_Family):
    kind = "counter"

    def _new_child(self) -> _CounterChild:
        return _CounterChild()

    def labels(self, *values: str) -> _CounterChild:
        return self._child(values)  # type: ignore[return-value]

    def _render_child(self, values: tuple[str, ...], child: object) -> list[str]:
        assert isinstance(child, _CounterChild)
        return [f"{self.name}{_label_text(self.labelnames, values)} {_num(child.value)}"]


class Gauge(_Family):
    kind = "gauge"

    def _new_child(self) -> _GaugeChild:
        return _GaugeChild()

    def labels(self, *values: str) -> _GaugeChild:
        return self._child(values)  # type: ignore[return-value]

    def _render_child(self, values: tuple[str, ...], child: object) -> list[str]:
        assert isinstance(child, _GaugeChild)
        return [f"{self.name}{_label_text(self.labelnames, values)} {_num(child.read())}"]


class Histogram(_Family):
    kind = "histogram"

    def __init__(
        self, name: str, doc: str, labelnames: Iterable[str], buckets: Iterable[float] = DEFAULT_BUCKETS
    ) -> None:
        super().__init__(name, doc, labelnames)
        self.buckets = tuple(sorted(buckets))

    def _new_child(self) -> _HistogramChild:
        return _HistogramChild(self.buckets)

    def labels(self, *values: str) -> _HistogramChild:
        return self._child(values)  # type: ignore[return-value]

    def _render_child(self, values: tuple[str, ...], child: object) -> list[str]:
        assert isinstance(child, _HistogramChild)
        lines = []
        cumulative = 0
        for upper, count in zip((*self.buckets, math.inf), child.counts, strict=True):
            cumulative += count
            le = f'le="{_num(upper)}"'
            lines.append(f"{self.name}_bucket{_label_text(self.labelnames, values, le)} {cumulative}")
        labels = _label_text(self.labelnames, values)
        lines.append(f"{self.name}_sum{labels} {_num(child.sum)}")
        lines.append(f"{self.name}_count{labels} {child.count}")
        return lines


class Registry:
    """Holds metric families; asking twice for the same name returns the same family."""

    def __init__(self) -> None:
        self._families: dict[str, _Family] = {}

    def _get(self, cls: type[_Family], name: str, doc: str, labelnames: Iterable[str], **kw: object) -> _Family:
        family = self._families.get(name)
        if family is None:
            family = cls(name, doc, labelnames, **kw)
            self._families[name] = family
        elif not isinstance(family, cls):
            raise ValueError(f"metric {name} is already registered as a {family.kind}")
        return family

    def counter(self, name: str, doc: str, labelnames: Iterable[str] = ()) -> Counter:
        return self._get(Counter, name, doc, labelnames)  # type: ignore[return-value]

    def gauge(self, name: str, doc: str, labelnames: Iterable[str] = ()) -> Gauge:
        return self._get(Gauge, name, doc, labelnames)  # type: ignore[return-value]

    def histogram(
        self, name: str, doc: str, labelnames: Iterable[str] = (), buckets: Iterable[float] = DEFAULT_BUCKETS
    ) -> Histogram:
        return self._get(Histogram, name, doc, labelnames, buckets=buckets)  # type: ignore[return-value]

    def render(self) -> bytes:
        lines: list[str] = []
        for family in self._families.values():
            lines.extend(family.render())
        return ("\n".join(lines) + "\n").encode()


REGISTRY = Registry()
