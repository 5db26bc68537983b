"""One error hierarchy for all of Quiver. Each error carries its HTTP status; transports translate once.

Messages say what was wrong and what was expected, e.g.
``input 'x': expected shape [-1, 30], got [1, 29]``.
"""

from __future__ import annotations


class QuiverError(Exception):
    """Base class. ``status`` is the HTTP status a transport answers with."""

    status: int = 500
    headers: tuple[tuple[str, str], ...] = ()

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(QuiverError):
    """The client's request is malformed or does not match the model (400)."""

    status = 400


class NotFound(QuiverError):
    """Unknown model, version, route or output (404)."""

    status = 404


class MethodNotAllowed(QuiverError):
    status = 405


class PayloadTooLarge(QuiverError):
    status = 413


class Overloaded(QuiverError):
    """The queue is full: load shedding (429, with Retry-After)."""

    status = 429

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.headers = (("Retry-After", str(max(1, round(retry_after_s)))),)


class Unavailable(QuiverError):
    """Model not ready, being unloaded, or server shutting down (503)."""

    status = 503


class DeadlineExceeded(QuiverError):
    """The request's deadline passed before it could run (504)."""

    status = 504


class ModelLoadError(QuiverError):
    """A model could not be loaded (bad config, unreadable file). Reported, never fatal to others."""

    status = 400


class ConfigError(ModelLoadError):
    """An invalid config file; the message names the file and the field."""


class InternalError(QuiverError):
    status = 500
