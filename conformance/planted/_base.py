"""The planted-bug record and the helpers the per-rule catalogues share.

A planted bug is a backend that is wrong in one known, plausible way: the
reference (or the PyTorch backend) with one mutation. The suite must fail
every one of them; ``docs/kill-matrix.md`` records which checks do.
"""

from __future__ import annotations

import contextlib
import importlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fusion_spec.spec import SpecError

from ..adapter import Adapter, load_adapter
from ..broken import _Broken


@dataclass(frozen=True)
class PlantedBug:
    """One planted bug of the public catalogue.

    ``adapter``: the broken adapter class, or ``"module:Class"`` for one that needs
    an optional framework (``requires``). ``rules``: the rules the mutation
    touches; the kill matrix runs every check of those rules (``scope`` narrows it
    to id patterns, for the slower framework bugs). ``caught_by``: the checks that
    must fail, named in the catalogue so that each bug has a check answerable for it.
    ``flips``: the spec comparisons (``rule.name``) it turns non-strict.
    """

    name: str
    rules: tuple[str, ...]
    adapter: Any
    doc: str
    caught_by: tuple[str, ...]
    flips: tuple[str, ...] = ()
    requires: str | None = None
    scope: tuple[str, ...] = ()

    def load(self) -> Adapter:
        if isinstance(self.adapter, str):
            return load_adapter(self.adapter)
        return self.adapter()

    @property
    def patterns(self) -> tuple[str, ...]:
        """The check-id patterns the bug is run on."""
        return self.scope or tuple(f"{r}/*" for r in self.rules)


class Broken(_Broken):
    """The reference with one planted bug; subclasses name it with ``bug``."""


def nudged(s, field: str, direction: float):
    """``s`` with ``field`` moved one float64 ulp towards ``direction``.

    ``x < nextafter(p, +inf)`` is ``x <= p`` for every float64 ``x`` (no float64
    lies between), so a backend comparing non-strictly computes exactly the
    reference's function with the threshold nudged: no re-implementation needed.
    Where the nudge would leave the field's range (a probability 1 raised, a
    threshold 0 lowered) the spec is returned unchanged: there the two
    comparisons agree on every input the rule can see (noise is below 1,
    confidences above 0).
    """
    try:
        return s.replace(**{field: math.nextafter(getattr(s, field), direction)})
    except SpecError:
        return s


@contextlib.contextmanager
def patched_in(module: str, name: str, replacement) -> Iterator[None]:
    """Replace ``name`` in the reference module ``fusion_spec.fusion_ref.<module>`` only
    (``module=""``: the package itself, whose globals ``forward`` reads)."""
    m = importlib.import_module("fusion_spec.fusion_ref" + (f".{module}" if module else ""))
    original = getattr(m, name)
    setattr(m, name, replacement)
    try:
        yield
    finally:
        setattr(m, name, original)
