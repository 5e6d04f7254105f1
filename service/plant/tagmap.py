"""The tag map: which historian points or OPC UA nodes feed a model's signals, and where its
estimates are written back. A YAML file, validated so that a typo names the key.

```yaml
model: column_a
stream: unit-1               # optional: the stream these points are
max_age_s: 180               # optional: an input value older than this is stale (uncertain)
inputs:
  - {signal: T03, pi_path: '\\\\PISRV\\COLA.TI103', web_id: F1DPxyz, node_id: 'ns=2;s=TI103'}
outputs:
  - {value: estimate, web_id: F1DPabc, node_id: 'ns=2;s=XB_EST'}
```

PI points are matched by WebId, or by path or point name (PI compares these without regard to
case); OPC UA nodes by their NodeId string.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from service.contracts.errors import ServiceError

OutputValue = Literal["estimate", "estimate_corrected", "interval_low", "interval_high"]


class TagMapError(ServiceError):
    """A tag map file that cannot be used: the message names the file, key and reason."""

    status = 500
    error = "tag_map"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TagRef(_Strict):
    """Where one value lives in the plant's systems: any of the keys, at least one."""

    web_id: str | None = Field(default=None, min_length=1)
    pi_path: str | None = Field(default=None, min_length=1)
    pi_name: str | None = Field(default=None, min_length=1)
    node_id: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _named(self) -> TagRef:
        if not (self.web_id or self.pi_path or self.pi_name or self.node_id):
            raise ValueError("give at least one of web_id, pi_path, pi_name, node_id")
        return self

    def matches_pi(self, web_id: str | None, path: str | None, name: str | None) -> bool:
        if self.web_id is not None and web_id is not None:
            return self.web_id == web_id
        if self.pi_path is not None and path is not None:
            return self.pi_path.casefold() == path.casefold()
        return (
            self.pi_name is not None
            and name is not None
            and self.pi_name.casefold() == name.casefold()
        )


class InputTag(TagRef):
    signal: str = Field(min_length=1)


class OutputTag(TagRef):
    value: OutputValue


class TagMap(_Strict):
    model: str | None = None
    stream: str | None = None
    max_age_s: float | None = Field(default=None, gt=0)
    inputs: list[InputTag] = Field(min_length=1)
    outputs: list[OutputTag] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> TagMap:
        signals = [i.signal for i in self.inputs]
        twice = sorted({s for s in signals if signals.count(s) > 1})
        if twice:
            raise ValueError(f"inputs: signals mapped more than once: {twice}")
        for kind, refs in (("inputs", self.inputs), ("outputs", self.outputs)):
            for key in ("web_id", "pi_path", "node_id"):
                seen = [getattr(r, key) for r in refs if getattr(r, key) is not None]
                dupes = sorted({v for v in seen if seen.count(v) > 1})
                if dupes:
                    raise ValueError(f"{kind}: {key} used more than once: {dupes}")
        return self

    def signal_of_pi(self, web_id: str | None, path: str | None, name: str | None) -> str | None:
        """The signal a PI stream feeds, or None if the map does not list it."""
        for tag in self.inputs:
            if tag.matches_pi(web_id, path, name):
                return tag.signal
        return None

    def signal_of_node(self, node_id: str) -> str | None:
        for tag in self.inputs:
            if tag.node_id == node_id:
                return tag.signal
        return None


def load_tag_map(path: Path | str) -> TagMap:
    """Read and validate a tag map; errors name the file and the key."""
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TagMapError(f"cannot read tag map {p}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise TagMapError(f"tag map {p} is not valid YAML: {exc}") from exc
    try:
        return TagMap.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()
        )
        raise TagMapError(f"tag map {p} is invalid: {problems}") from exc
