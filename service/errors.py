"""One family of errors for the service, each carrying its HTTP status.

Routes raise these; one handler in ``service.app`` turns every one of them into
``{"error": ..., "detail": ...}`` with the status. A client's mistake is always a 4xx.
"""

from __future__ import annotations


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


class ModelNotFoundError(ServiceError):
    status = 404
    error = "model_not_found"


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
