"""One family of errors for the service, each carrying its HTTP status.

Routes raise these; one handler in ``service.app`` turns every one of them into
``{"error": ..., "detail": ...}`` with the status. A client's mistake is always a 4xx.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar


class PathError(Exception):
    """A failure about a file or directory (registry, store), with the status it maps to.

    The message names the path and the reason so an operator can act without a traceback.
    """

    default_status: ClassVar[int] = 500

    def __init__(self, path: Path | str | None, reason: str, *, status: int | None = None) -> None:
        self.path = None if path is None else str(path)
        self.reason = reason
        self.status: int = self.default_status if status is None else status
        super().__init__(reason if path is None else f"{path}: {reason}")


class ServiceError(Exception):
    """Base: ``error`` is a short machine-readable code, ``detail`` says what and why."""

    status = 500
    error = "internal_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadInputError(ServiceError):
    """The request is well-formed JSON but its content is wrong; the detail names the field."""

    status = 422
    error = "bad_input"


class PayloadTooLargeError(ServiceError):
    status = 413
    error = "payload_too_large"


class UnsupportedMediaTypeError(ServiceError):
    """A body that is not JSON: refused before it is read (a cross-site form cannot post)."""

    status = 415
    error = "unsupported_media_type"


class ModelNotFoundError(ServiceError):
    status = 404
    error = "model_not_found"


class ModelFaultError(ServiceError):
    """The model gave no usable estimate for inputs it should handle: the server's fault,
    the same 500 on every protocol, and logged."""

    status = 500
    error = "model_fault"


class NotReadyError(ServiceError):
    """No verified model is loaded (yet): try again later."""

    status = 503
    error = "not_ready"


class UnauthorizedError(ServiceError):
    status = 401
    error = "unauthorized"


class ForbiddenError(ServiceError):
    status = 403
    error = "forbidden"


class ConflictError(ServiceError):
    status = 409
    error = "conflict"
