"""The project's errors: one root, one class per failure family, each carrying its HTTP status.

Every failure the project reports as a message (the command line prints it, the service
answers it) is a :class:`SoftSensorError`. The families under it:

- request and serving failures (:class:`ServiceError`: bad input, not ready, model fault, ...);
- failures about a file or directory (:class:`PathError`): the registry
  (:class:`RegistryError`, with :class:`ModelNotFoundError`) and the lab store;
- the training side's (``training.errors``: spec, data, simulation; export).

``status``, ``error`` and ``headers`` say how a failure reads over HTTP; the one mapping to an
answer is ``service.api.errors.error_body``. A client's mistake is always a 4xx.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar


class SoftSensorError(Exception):
    """Root of every error the project reports as a clean message instead of a traceback.

    ``status`` is the HTTP status it maps to (a class default; an instance may carry its
    own), ``error`` a short machine-readable code, ``detail`` what happened and why.
    """

    status: int = 500
    error: str = "internal_error"
    headers: ClassVar[Mapping[str, str]] = {}  # what HTTP asks for with this status

    def __init__(self, detail: str, *, status: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status

    def public(self, roots: Sequence[Path]) -> str:
        """The message a client may see (paths of the server's disk left out)."""
        return self.detail


class PathError(SoftSensorError):
    """A failure about a file or directory (registry, store), with the status it maps to.

    The message names the path and the reason so an operator can act without a traceback.
    """

    def __init__(self, path: Path | str | None, reason: str, *, status: int | None = None) -> None:
        self.path = None if path is None else str(path)
        self.reason = reason
        super().__init__(reason if path is None else f"{path}: {reason}", status=status)

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


class ServiceError(SoftSensorError):
    """A request or serving failure: ``detail`` says what and why, and may be shown whole."""


class RegistryError(PathError):
    """Base of every registry failure (``service.contracts.registry``)."""

    error = "registry"


class ModelNotFoundError(RegistryError, ServiceError):
    """The model, version or champion asked for does not exist, or is not served here.

    The one not-found error, a registry failure and a request failure at once: the registry
    raises it with the path it looked at, the service with ``path=None`` for a name it
    does not serve (and its scoring answers it like any other request failure).
    """

    status = 404
    error = "model_not_found"


class VersionExistsError(RegistryError):
    """A version with that id is already stored; versions are never overwritten."""

    status = 409


class CorruptModelError(RegistryError):
    """Stored content is invalid: card not a valid ModelCard, sha256 or ids not matching."""

    status = 422


class InvalidNameError(RegistryError, ValueError):
    """A name, version or file name that does not match its pattern (or is reserved)."""

    status = 422


class BadInputError(ServiceError):
    """The request is well-formed JSON but its content is wrong; the detail names the field."""

    status = 422
    error = "bad_input"


class UnreadableBodyError(ServiceError):
    """A body that is not what its headers say it is (corrupt or truncated compressed data):
    it cannot be read at all, so nothing in it can be named."""

    status = 400
    error = "bad_request"


class PayloadTooLargeError(ServiceError):
    status = 413
    error = "payload_too_large"


class UnsupportedMediaTypeError(ServiceError):
    """A body that is not JSON: refused before it is read (a cross-site form cannot post)."""

    status = 415
    error = "unsupported_media_type"


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
