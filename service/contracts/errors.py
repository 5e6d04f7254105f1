"""One family of errors for the service, each carrying its HTTP status.

Routes raise these; one handler in ``service.api.app`` turns every one of them into
``{"error": ..., "detail": ...}`` with the status. A client's mistake is always a 4xx.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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

    def public(self, roots: Sequence[Path]) -> str:
        """The message for a client: paths under ``roots`` (the registry, the state
        directory) shown relative to them, any other path by its file name only, so an
        answer never maps the server's disk. The log keeps the full message."""
        reason = self.reason
        for root in roots:  # OSError texts embed the absolute path
            reason = reason.replace(f"{root}/", "").replace(str(root), ".")
        if self.path is None:
            return reason
        where = Path(self.path)
        for root in roots:
            if where.is_relative_to(root):
                return f"{where.relative_to(root).as_posix() or '.'}: {reason}"
        return f"{where.name}: {reason}"


def shown_names(names: Sequence[str], count: int = 10, width: int = 40) -> str:
    """Names a client sent, for an error message: at most ``count`` of them, each cut to
    ``width`` characters, so that a 4 MB signal name gets a short answer, not a 4 MB one."""
    cut = [n if len(n) <= width else f"{n[:width]}...({len(n)} chars)" for n in names[:count]]
    more = f" and {len(names) - count} more" if len(names) > count else ""
    return f"{cut}{more}"


class ServiceError(Exception):
    """Base: ``error`` is a short machine-readable code, ``detail`` says what and why."""

    status = 500
    error = "internal_error"
    headers: ClassVar[Mapping[str, str]] = {}  # what HTTP asks for with this status

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
    headers: ClassVar[Mapping[str, str]] = {"WWW-Authenticate": 'Bearer realm="softsensor admin"'}


class ForbiddenError(ServiceError):
    status = 403
    error = "forbidden"


class ConflictError(ServiceError):
    status = 409
    error = "conflict"
