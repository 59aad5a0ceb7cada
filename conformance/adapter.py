"""The adapter protocol: what a backend author implements to be judged by the suite.

An adapter translates between the suite (NumPy arrays, canonical parameter
names, the spec's noise and aux contracts) and one backend. Five methods:

``build(s, params) -> model``
    a model of rule ``s`` holding the canonical float32 ``params``.
``forward(model, v, t, *, training, noise, options) -> (fused, aux)``
    run on NumPy ``(B, D)`` inputs in eval or training mode; ``noise`` is the
    spec's ``{name: uniform [0, 1) array}`` or ``None`` (the backend then draws
    from its own RNG); ``aux`` holds the spec's ``value`` and ``decision``
    outputs (margins optional). Everything returned as NumPy.
``canonical_params(model) -> {name: array}``
    the parameters the *framework* holds (its registry, not a copy the adapter
    kept), under canonical names and ``(out, in)`` layout.
``gradients(model, v, t, cotangent, *, training, noise, options) -> {name: array}``
    gradients of ``sum(fused * cotangent)`` with respect to ``"v"``, ``"t"`` and
    every trainable parameter, computed by the framework's autodiff; raise
    ``NotSupported(reason)`` when the backend has none.
``not_applicable(s, *, training) -> str | None``
    a reason when the backend cannot run this spec or mode at all (reported
    as "n/a: reason" in the matrix, never as a pass).

Set ``name`` (matrix column) and ``dtype`` (selects the tolerance policy).

Presence masks (optional): an adapter that sets ``supports_present = True``
also receives ``present=`` in ``forward`` and ``gradients``: ``None`` (all
present) or a ``(B, 2)`` bool array (image, text per sample), passed on to the
backend. The suite's missing-modality cases report "n/a" for an adapter without
it (adapters written before the mask existed keep working).

Aux loss terms (optional): an adapter that sets ``supports_aux_gradients = True``
also receives ``aux_cotangents={name: array}`` in ``gradients`` for the cases
whose loss holds the spec's differentiable aux outputs (``AuxSpec.differentiable``:
``energy_loss``); it returns the gradients of
``sum(fused * cotangent) + sum_a sum(aux[a] * aux_cotangents[a])``. Those cases
report "n/a" for an adapter without it.

Token sequences (optional): an adapter that sets ``supports_tokens = True`` also
receives ``v`` ``(B, L_v, D_v)`` and ``t`` ``(B, L_t, D_t)`` token sequences and, in
``forward`` and ``gradients``, ``image_mask=`` / ``text_mask=`` ``(B, L)`` bool padding
masks (True: a real token) where the case has them; the gradients it returns for
``v`` and ``t`` have the token shapes. The token cases report "n/a" for an adapter
without it.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

import numpy as np


class NotSupported(Exception):  # noqa: N818 (a reason, not an error)
    """Raised by an adapter for a check its backend cannot take; the message is the reason."""


class Adapter:
    """Base class of adapters; subclasses implement ``build``, ``forward`` and ``canonical_params``."""

    name: str = "backend"
    dtype: str = "float32"
    #: True when ``forward`` and ``gradients`` take ``present=`` (a presence mask).
    supports_present: bool = False
    #: True when ``gradients`` takes ``aux_cotangents=`` (differentiable aux loss terms).
    supports_aux_gradients: bool = False
    #: True when ``forward`` and ``gradients`` take token sequences and ``image_mask=``,
    #: ``text_mask=`` padding masks.
    supports_tokens: bool = False

    def build(self, s, params: Mapping[str, np.ndarray]) -> Any:
        raise NotImplementedError

    def forward(
        self,
        model: Any,
        v: np.ndarray,
        t: np.ndarray,
        *,
        training: bool,
        noise: Mapping[str, np.ndarray] | None,
        options: Mapping[str, Any],
        present: np.ndarray | None = None,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        raise NotImplementedError

    def canonical_params(self, model: Any) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def gradients(
        self,
        model: Any,
        v: np.ndarray,
        t: np.ndarray,
        cotangent: np.ndarray,
        *,
        training: bool,
        noise: Mapping[str, np.ndarray] | None,
        options: Mapping[str, Any],
        present: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        raise NotSupported(f"{self.name}: no gradients")

    def not_applicable(self, s, *, training: bool) -> str | None:
        return None

    def describe(self) -> str:
        """One line for the report header (framework versions, device)."""
        return self.name


def load_adapter(target: str, seed: int | None = None, **kwargs: Any) -> Adapter:
    """Instantiate ``"package.module:ClassName"`` (or ``module:factory``) as an adapter.

    ``seed``: passed as ``seed=`` to an adapter that takes one (every bundled adapter
    does: it seeds the backend's own RNG, which the distribution checks judge).
    ``kwargs`` go to the class or factory as they are (the bundled torch and Keras
    adapters take ``device`` and ``precision``).
    """
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(
            f"--backend expected 'module:Adapter' (e.g. fusion_spec.conformance.adapters.torch:TorchAdapter); "
            f"received {target!r}"
        )
    module = importlib.import_module(module_name)
    try:
        factory = getattr(module, attr)
    except AttributeError as e:
        raise ValueError(f"--backend {target!r}: module {module_name!r} has no {attr!r}") from e
    takes_seed = seed is not None and "seed" in inspect.signature(factory).parameters
    adapter = factory(seed=seed, **kwargs) if takes_seed else factory(**kwargs)
    missing = [m for m in ("build", "forward", "canonical_params") if not hasattr(adapter, m)]
    if missing:
        raise TypeError(f"--backend {target!r}: the adapter lacks {missing}")
    return adapter
