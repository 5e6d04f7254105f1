"""Is a stored version what it claims to be: its card valid, naming its directory, and the
sha256 of its model file the one the card records.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import ValidationError

from service.contracts.card import ModelCard
from service.contracts.errors import CorruptModelError

MODEL_FILE = "model.onnx"
_HASH_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """Hash in chunks: a model may be larger than we want in memory twice."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def describe_validation(exc: ValidationError) -> str:
    """A one-line summary of the first few pydantic errors, field path first."""
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        parts.append(f"{loc}: {err['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def parse_card(data: bytes | str, path: Path) -> ModelCard:
    """Validate card JSON into a ModelCard, or say which field is wrong and where."""
    try:
        return ModelCard.model_validate_json(data)
    except ValidationError as exc:
        raise CorruptModelError(
            path, f"not a valid model card: {describe_validation(exc)}"
        ) from exc


def check_card_matches(card: ModelCard, name: str, version: str, sha256: str, path: Path) -> None:
    """A card must describe the directory it sits in and the exact bytes beside it."""
    if card.name != name:
        raise CorruptModelError(path, f"card names model {card.name!r}, directory is {name!r}")
    if card.version != version:
        raise CorruptModelError(
            path, f"card names version {card.version!r}, directory is {version!r}"
        )
    if card.onnx_sha256 != sha256:
        raise CorruptModelError(
            path,
            f"sha256 of {MODEL_FILE} is {sha256}, card says {card.onnx_sha256}",
        )
