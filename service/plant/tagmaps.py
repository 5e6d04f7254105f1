"""The tag maps a service serves with: read from ``SOFTSENSOR_TAG_MAPS`` when the app is built.

Each file maps one model's signals (its ``model`` key is required here) for one stream, or for
any stream when it names none. Several files may serve one model, one per stream (identical
units fed by one model, each with its own PI points). All are validated before the service
starts: a file that does not parse, a key misspelt, a model missing, or two maps for the same
(model, stream) stop the start with a message naming the file and the key.

A request finds its map by model and stream (``find``); whether the map fits the model
version served is checked then (``check_signals``), since a model's signals can change with a
promotion while the files stay.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from service.contracts.errors import BadInputError, shown_names
from service.plant.tagmap import TagMap, TagMapError, load_tag_map

SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class ServedTagMap:
    """A validated tag map and the file it came from (its name is what an answer shows)."""

    path: Path
    tags: TagMap

    @property
    def model(self) -> str:
        assert self.tags.model is not None  # required by load_tag_maps
        return self.tags.model

    def check_signals(self, needed: Sequence[str], known: frozenset[str]) -> None:
        """The map gives every signal the model needs and none it does not know: else the
        file is wrong for the served version (an operator's fix, hence not a 4xx)."""
        for i, tag in enumerate(self.tags.inputs):
            if tag.signal not in known:
                raise TagMapError(
                    f"tag map {self.path.name}: inputs[{i}].signal: {tag.signal!r} is not a "
                    f"signal of model {self.model!r}"
                )
        mapped = {tag.signal for tag in self.tags.inputs}
        missing = [s for s in needed if s not in mapped]
        if missing:
            raise TagMapError(
                f"tag map {self.path.name}: inputs: no point for signals {missing} of model "
                f"{self.model!r}"
            )


def _files(paths: Iterable[Path]) -> list[Path]:
    """The files named, and the tag map files (``*.yaml``, ``*.yml``) of directories named."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out += sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file())
        else:
            out.append(path)  # a missing file is reported by load_tag_map, naming it
    return out


def load_tag_maps(paths: Iterable[Path]) -> TagMaps:
    """Every tag map of ``paths`` (files or directories), validated; raises TagMapError."""
    maps: dict[tuple[str, str | None], ServedTagMap] = {}
    for path in _files(paths):
        tags = load_tag_map(path)
        if tags.model is None:
            raise TagMapError(f"tag map {path} is invalid: model: required (the model it feeds)")
        key = (tags.model, tags.stream)
        if key in maps:
            raise TagMapError(
                f"tag map {path} is invalid: model, stream: {tags.model!r} and "
                f"{tags.stream!r} are mapped by {maps[key].path} already"
            )
        maps[key] = ServedTagMap(path, tags)
    return TagMaps(maps)


class TagMaps:
    """The served tag maps by (model, stream); a map without a stream serves any stream."""

    def __init__(self, maps: dict[tuple[str, str | None], ServedTagMap]) -> None:
        self._maps = maps

    def __len__(self) -> int:
        return len(self._maps)

    def find(self, model: str, stream: str | None) -> ServedTagMap:
        """The map of ``model`` for ``stream``; with no stream named, the model's only map."""
        mine = {s: m for (name, s), m in self._maps.items() if name == model}
        if not mine:
            raise BadInputError(
                f"model: no tag map for model {model!r} (SOFTSENSOR_TAG_MAPS names the files)"
            )
        if stream is not None:
            found = mine.get(stream) or mine.get(None)
            if found is None:
                raise BadInputError(
                    f"stream: no tag map of model {model!r} for stream {stream!r}; maps for "
                    f"streams {shown_names(sorted(s for s in mine if s is not None))}"
                )
            return found
        if len(mine) > 1:
            streams = sorted(str(s) for s in mine)
            raise BadInputError(
                f"stream: model {model!r} has tag maps for streams {shown_names(streams)}: "
                "name one (?stream=)"
            )
        return next(iter(mine.values()))
