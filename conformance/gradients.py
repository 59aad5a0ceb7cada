r"""Gradient conformance: a backend's autodiff against central finite differences of the reference.

The loss is a fixed random projection of the output, $L = \sum_{b,d} f_{bd}\,R_{bd}$
with $R \sim N(0, 1)^{B \times D}$ seeded by the case name. The backend returns
$\partial L / \partial x$ for $x \in \{v, t\}$ and every trainable parameter; the
suite takes float64 central differences of the reference,
$\partial_d L \approx (L(x + h d) - L(x - h d)) / 2h$:

* ``v`` and ``t`` element-wise. Every rule's output row ``b`` depends only on
  sample ``b`` (given the noise), so perturbing column ``j`` of all samples at once
  and reading the per-sample losses $L_b$ gives $\partial L / \partial x_{bj}$ for
  every ``b``: ``2 D`` reference calls per input instead of ``2 B D``. Except in
  training with ``input_norm="batch"``, whose batch statistics couple the rows:
  there each present element is perturbed alone (``2 B D`` calls).
* each parameter tensor along two seeded random unit directions $d$: the
  backend's $\langle g, d \rangle$ against the difference quotient. A wrong
  gradient is off along almost every direction, so two directions catch it
  without ``2 n`` calls per tensor.

Step: $h = 10^{-6} \max(1, \max|x|)$. In float64 the truncation error is
$O(h^2 |L'''|) \approx 10^{-12}$ and the rounding error
$O(\epsilon_{64} |L| / h) \approx 10^{-9}$ relative, both far below the float32
tolerance they are compared with. Discrete decisions must not move under the
perturbation: every decision of the reference at $x \pm h d$ is compared with the
unperturbed one, and a case whose decision flips is a broken case (an error of
the suite, not a backend failure). Gradient cases are built away from every
boundary (a test checks their margins exceed ``1e-3``).

Excluded from the differences: ``s.no_output_gradient()``. With
``straight_through=False`` a router decides the route by a discrete draw or
argmax and its probabilities never enter the output, so the exact gradient is 0
(the finite difference is 0 too, but comparing 0 with 0 tests nothing); a
trainable ``energy_weight`` only scales the energy loss, not the output. For
them the backend must return no gradient or zeros.

A stopped gradient (``s.stopped_input_rows``: ``cross_attention``'s
``lone_gradient="stop"``): a sample with one modality passes no gradient from its
output back through the rule's input (after ``input_proj`` and ``input_norm``). The
differences for ``v``, ``t`` and ``input_proj.*`` then sum the other samples' losses
only; in training with ``input_norm="batch"`` those still reach a stopped row through
the batch statistics, elsewhere its gradient must be exactly 0.

Straight-through (``straight_through=True``): a hard sample's output is
$y (1 + r_k - \mathrm{sg}(r_k))$, equal to $y$ forward, so finite differences of
the output see no router gradient. The suite differentiates the surrogate with
the same gradient instead,
$L_{st}(\theta) = L(\theta) + \sum_b w_b \langle R_b, f_b(\theta_0) \rangle\, r_{b, k_b}(\theta)$,
with $f(\theta_0)$ and the routes $k$ held at the unperturbed point and
$w_b = 1$ for the routed samples (``hard`` for ``shomr``, all for
``energy_aware_adaptive``). With ``straight_through_routes="all"`` (the default of
both) the term is that of every route,
$\sum_b w_b \sum_j \langle R_b, y_{b,j}(\theta_0) \rangle\, r_{b,j}(\theta)$, with
$y_j(\theta_0)$ the output the call gives when route $j$ is taken (the route logits'
bias of $j$ raised by $10^6$, so $r$ is one-hot on $j$), non-finite values as 0.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fusion_spec import fusion_ref
from fusion_spec.spec.tolerance import gradient_tolerance

from .cases import Case

STEP = 1e-6
DIRECTIONS = 2
#: Rounding of one loss evaluation, in ulps of ``sum_b sum_d |out * R|``. A central
#: difference with step ``h`` inherits ``ROUNDING_ULPS * eps * magnitude / h`` of it;
#: two machines (or BLAS builds) may disagree by that much, while the truncation
#: error is the same everywhere. Measured between two x86 machines: 4.4e-10 on a
#: derivative whose bound is 7.7e-8 (16 ulps of a magnitude of 22).
ROUNDING_ULPS = 16


class CaseError(RuntimeError):
    """A gradient case is unusable: a decision flips under the finite-difference step."""


def cotangent(case: Case) -> np.ndarray:
    """The fixed random projection ``R`` ``(B, dim)`` of the case's output (float32, seeded
    by its name)."""
    rng = np.random.default_rng(zlib.crc32(case.name.encode()))
    return rng.standard_normal((case.v.shape[0], case.spec.dim)).astype(np.float32)


def aux_cotangents(case: Case) -> dict[str, np.ndarray]:
    """``{aux name: R_a}`` for a case with ``aux_gradient``: the loss adds
    ``sum(aux_a * R_a)`` for each differentiable aux output (``AuxSpec.differentiable``),
    ``R_a`` float32 ``N(0, 1)`` of the aux's shape, seeded by the case and aux names."""
    if not case.aux_gradient:
        return {}
    B = case.v.shape[0]
    declared = case.spec.call_aux(
        B, training=case.training, present=case.masked, tokens=case.tokens, **case.options
    )
    out = {}
    for a in declared:
        if a.differentiable:
            rng = np.random.default_rng(zlib.crc32(f"aux/{a.name}/{case.name}".encode()))
            out[a.name] = np.asarray(rng.standard_normal(a.shape), dtype=np.float32)
    return out


def _decisions(s, aux: Mapping, batch: int, training: bool, options) -> dict[str, np.ndarray]:
    return {
        a.name: np.asarray(aux[a.name])
        for a in s.call_aux(batch, training=training, present="neither" in aux, **options)
        if a.role == "decision"
    }


def padding_gradient(grads: Mapping[str, np.ndarray], image_mask, text_mask) -> list[str]:
    """Problems where a gradient reaches a padding token: it must be exactly 0."""
    problems = []
    for name, mask in (("v", image_mask), ("t", text_mask)):
        g = grads.get(name)
        if g is None or mask is None:
            continue
        tokens = np.asarray(g)[~mask]
        if not np.all(tokens == 0.0):
            problems.append(
                f"d/d{name}: padding tokens must get exactly zero gradient (a selection, not "
                f"a product with 0); received {int(np.sum(tokens != 0.0))} nonzero or NaN entries"
            )
    return problems


def absent_rows_gradient(grads: Mapping[str, np.ndarray], present: np.ndarray) -> list[str]:
    """Problems where a gradient reaches an absent modality's row: it must be exactly 0."""
    return _zero_rows(grads, ~np.asarray(present, bool),
                      "the rows of absent samples must get exactly zero gradient "
                      "(a selection, not a product with 0)")


def _zero_rows(grads: Mapping[str, np.ndarray], rows: np.ndarray, what: str) -> list[str]:
    """Problems where ``v``'s or ``t``'s gradient is not exactly 0 on ``rows`` (``(B, 2)``
    bool, image and text columns); ``what`` says why it must be."""
    problems = []
    for name, column in (("v", 0), ("t", 1)):
        g = grads.get(name)
        if g is None:
            continue
        got = np.asarray(g)[rows[:, column]]
        if not np.all(got == 0.0):
            problems.append(
                f"d/d{name}: {what}; received max |g| "
                f"{np.nanmax(np.abs(got)) if np.isfinite(got).any() else got.flat[0]} "
                f"({int(np.sum(got != 0.0))} nonzero or NaN entries)"
            )
    return problems


@dataclass
class Expected:
    """Finite-difference gradients of one case."""

    inputs: dict[str, np.ndarray]  # "v", "t" -> (B, D)
    directions: dict[str, list[np.ndarray]]  # param -> unit directions
    derivatives: dict[str, list[float]]  # param -> directional derivatives
    excluded: set[str] = field(default_factory=set)
    scale: float = 1.0
    #: "v", "t", param -> absolute rounding bound of each difference (see ROUNDING_ULPS)
    rounding: dict[str, float] = field(default_factory=dict)


def save_expected(expected: Expected, path: Path) -> None:
    """Write ``expected`` as an ``.npz`` (no pickle): arrays under ``inputs/NAME`` and
    ``directions/PARAM/I``, the rest as JSON. Written to a temporary name and renamed,
    so a reader in another process sees the whole file or none."""
    meta = {
        "directions": {k: len(v) for k, v in expected.directions.items()},
        "derivatives": {k: [float(x) for x in v] for k, v in expected.derivatives.items()},
        "excluded": sorted(expected.excluded),
        "scale": float(expected.scale),
        "rounding": {k: float(x) for k, x in expected.rounding.items()},
    }
    arrays = {f"inputs/{k}": v for k, v in expected.inputs.items()}
    for k, dirs in expected.directions.items():
        arrays.update({f"directions/{k}/{i}": d for i, d in enumerate(dirs)})
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_expected(path: Path) -> Expected | None:
    """``save_expected``'s file as ``Expected``; ``None`` when there is none yet."""
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(z["meta"].tobytes().decode())
        return Expected(
            inputs={k[len("inputs/") :]: z[k] for k in z.files if k.startswith("inputs/")},
            directions={k: [z[f"directions/{k}/{i}"] for i in range(n)] for k, n in meta["directions"].items()},
            derivatives=meta["derivatives"],
            excluded=set(meta["excluded"]),
            scale=meta["scale"],
            rounding=meta["rounding"],
        )


class _Loss:
    """Per-sample loss ``L_b`` of the reference at perturbed points, with the decision guard."""

    def __init__(self, case: Case):
        self.case = case
        self.s = case.spec
        self.R = cotangent(case).astype(np.float64)
        self.aux_R = {k: r.astype(np.float64) for k, r in aux_cotangents(case).items()}
        self.base = {"v": case.v.astype(np.float64), "t": case.t.astype(np.float64)}
        self.params = {k: p.astype(np.float64) for k, p in case.params.items()}
        out, aux = self._forward(self.base, self.params)
        self.decisions = _decisions(self.s, aux, case.v.shape[0], case.training, case.options)
        self.straight_through = bool(getattr(self.s, "straight_through", False))
        if self.straight_through:
            self.route = aux["route"]
            routed = aux["hard"] if self.s.kind == "shomr" else np.ones(case.v.shape[0])
            if getattr(self.s, "straight_through_routes", "chosen") == "all":
                # (B, K): <R_b, y_j> for every route's output y_j, held at the base point
                self.st_weight = routed[:, None] * np.stack(
                    [np.sum(self.R * held, axis=1) for held in self._route_outputs()], axis=1
                )
            else:
                self.st_weight = routed * np.sum(self.R * out, axis=1)  # (B,)

    def _route_outputs(self) -> list[np.ndarray]:
        """Each route's output ``y_j`` ``(B, D)`` at the base point (non-finite values as 0):
        the call with the route logits' bias of route ``j`` raised by ``1e6``, so that
        ``r`` is one-hot on ``j`` and every draw or argmax picks it (samples with one
        modality keep their route: their ``r`` is constant and never reaches the sum)."""
        outputs = []
        for j in range(self.params["router.out.bias"].shape[0]):
            params = dict(self.params)
            params["router.out.bias"] = params["router.out.bias"].copy()
            params["router.out.bias"][j] += 1e6
            y, _ = self._forward(self.base, params)
            outputs.append(np.nan_to_num(y, nan=0.0, posinf=0.0, neginf=0.0))
        return outputs

    def _forward(self, x, params):
        c = self.case
        return fusion_ref.forward(
            self.s,
            params,
            x["v"],
            x["t"],
            training=c.training,
            **c.call_masks,
            noise=c.noise,
            return_aux=True,
            **c.options,
        )

    def magnitude(self) -> float:
        """``sum |out * R|`` (plus the straight-through term) at the base point."""
        out, aux = self._forward(self.base, self.params)
        total = float(np.sum(np.abs(out * self.R)))
        total += sum(float(np.sum(np.abs(aux[k] * r))) for k, r in self.aux_R.items())
        if self.straight_through:
            total += float(np.sum(np.abs(self.st_weight)))
        return max(1.0, total)

    def __call__(self, x, params, what: str) -> np.ndarray:
        out, aux = self._forward(x, params)
        now = _decisions(self.s, aux, out.shape[0], self.case.training, self.case.options)
        for name, value in now.items():
            if not np.array_equal(value, self.decisions[name]):
                raise CaseError(
                    f"{self.case.name}: decision {name!r} flips under the finite-difference "
                    f"step along {what}; the case is too close to a boundary for gradients"
                )
        loss = np.sum(out * self.R, axis=1)  # (B,)
        for k, r in self.aux_R.items():  # a batch-level term, spread evenly over the rows
            loss = loss + float(np.sum(aux[k] * r)) / out.shape[0]
        if self.straight_through and self.st_weight.ndim == 2:
            loss = loss + np.sum(self.st_weight * aux["route_probs"], axis=1)
        elif self.straight_through:
            r_k = np.take_along_axis(aux["route_probs"], self.route[:, None], axis=1)[:, 0]
            loss = loss + self.st_weight * r_k
        return loss


def _real(case: Case, column: int, x: np.ndarray) -> np.ndarray:
    """Where ``x`` (``(B, D)`` or ``(B, L, D)``) holds values the call reads: rows of
    present samples, tokens that are not padding. Shape ``x.shape[:-1]``."""
    real = np.ones(x.shape[:-1], dtype=bool)
    mask = (case.image_mask, case.text_mask)[column]
    if mask is not None:
        real &= mask
    if case.present is not None:
        real &= case.present[:, column].reshape((-1,) + (1,) * (x.ndim - 2))
    return real


def _coupled(case: Case) -> bool:
    """Whether each output row reads every input row: ``input_norm="batch"`` in training
    (the batch statistics), or a batch-level aux loss term."""
    return (case.training and case.spec.input_norm == "batch") or case.aux_gradient


def _kept_rows(case: Case) -> np.ndarray:
    """``(B,)`` float: 1 for a sample whose output's gradient reaches the rule's inputs,
    0 for one whose present input the spec stops (``stopped_rows``). The stop sits at
    the rule's input, after ``input_proj`` and ``input_norm``: such a sample's output
    trains the rule's parameters, but neither ``input_proj`` nor ``v``, ``t``; those
    still get the gradient of the other samples' outputs (through the batch statistics,
    in training, the stopped rows' inputs too)."""
    stopped = stopped_rows(case)
    keep = np.ones(case.v.shape[0])
    return keep if stopped is None else np.where(stopped.any(axis=1), 0.0, 1.0)


def stopped_rows(case: Case) -> np.ndarray | None:
    """``(B, 2)`` bool: the rows of ``v``, ``t`` whose gradient the spec stops
    (``stopped_input_rows``) given the case's presence: its mask, and a token sequence
    without a real token absent too, as the call reads them. ``None``: none."""
    B = case.v.shape[0]
    here = np.ones((B, 2), dtype=bool) if case.present is None else np.array(case.present, bool)
    for column, mask in enumerate((case.image_mask, case.text_mask)):
        if mask is not None:
            here[:, column] &= np.asarray(mask, bool).reshape(B, -1).any(axis=1)
    return case.spec.stopped_input_rows(here)


def stopped_rows_gradient(grads: Mapping[str, np.ndarray], case: Case) -> list[str]:
    """Problems where a gradient reaches a row the spec stops: it must be exactly 0."""
    stopped = stopped_rows(case)
    if stopped is None or _coupled(case):  # coupled: the other rows' gradient reaches them
        return []
    return _zero_rows(grads, stopped,
                      f"{case.spec.kind}'s spec stops the gradient of these rows "
                      "(stopped_input_rows: lone_gradient='stop', a lone sample's present "
                      "input): expected exactly 0 there (a stop, not a product with 0)")


def finite_differences(case: Case) -> Expected:
    """Element-wise differences for ``v``, ``t``; directional ones for each parameter."""
    loss = _Loss(case)
    s = case.spec
    untrained = {p.name for p in s.params() if not p.trained}
    # an aux loss term reaches what the output does not (the router without straight-through,
    # a trainable energy_weight): with one, nothing trained is excluded
    excluded = untrained | (set() if case.aux_gradient else set(s.no_output_gradient()))
    rounding_unit = ROUNDING_ULPS * np.finfo(np.float64).eps * loss.magnitude()
    # input_norm="batch" in training normalises with the batch's statistics: each output
    # row reads every row, so the per-column shortcut below does not apply
    # so does a batch-level aux term (the energy loss's mean over the batch)
    coupled = _coupled(case)
    keep = _kept_rows(case)  # the stopped samples' outputs reach neither input nor input_proj
    inputs, rounding = {}, {}
    for column, name in enumerate(("v", "t")):
        x = loss.base[name]
        # the step is scaled by the real entries: absent rows and padding tokens hold NaN or
        # 1e30 on purpose (and are never perturbed: their gradient is 0)
        real = _real(case, column, x)  # x.shape[:-1] bool
        h = STEP * max(1.0, float(np.max(np.abs(x[real]), initial=0.0)))
        rounding[name] = rounding_unit / h
        grad = np.zeros_like(x)
        if coupled:  # every loss reads every row: one element at a time, the losses summed
            for idx in zip(*np.nonzero(real), strict=True):
                for j in range(x.shape[-1]):
                    at = (*idx, j)
                    for sign in (1.0, -1.0):
                        shifted = dict(loss.base)
                        shifted[name] = x.copy()
                        shifted[name][at] += sign * h
                        grad[at] += sign * np.sum(
                            keep * loss(shifted, loss.params, f"{name}{list(at)}")
                        )
        else:  # rows are independent: one column (token, feature) of every row at once
            for at in np.ndindex(*x.shape[1:]):
                column_at = (slice(None), *at)
                for sign in (1.0, -1.0):
                    shifted = dict(loss.base)
                    shifted[name] = x.copy()
                    shifted[name][column_at] += sign * h
                    grad[column_at] += sign * keep * loss(
                        shifted, loss.params, f"{name}[:, {list(at)}]"
                    )
            grad = np.where(real[..., None], grad, 0.0)
        inputs[name] = grad / (2 * h)
    rng = np.random.default_rng(zlib.crc32(("directions/" + case.name).encode()))
    directions, derivatives = {}, {}
    for p in s.params():
        if p.name in excluded:
            continue
        x = loss.params[p.name]
        h = STEP * max(1.0, float(np.max(np.abs(x))))
        rounding[p.name] = rounding_unit / h
        directions[p.name], derivatives[p.name] = [], []
        rows = keep if p.name.startswith("input_proj.") else 1.0
        for i in range(DIRECTIONS):
            d = rng.standard_normal(x.shape)
            d /= np.linalg.norm(d)
            total = 0.0
            for sign in (1.0, -1.0):
                shifted = dict(loss.params)
                shifted[p.name] = x + sign * h * d
                total += sign * float(
                    np.sum(rows * loss(loss.base, shifted, f"{p.name} direction {i}"))
                )
            directions[p.name].append(d)
            derivatives[p.name].append(total / (2 * h))
    scale = max(float(np.max(np.abs(inputs["v"]))), float(np.max(np.abs(inputs["t"]))), 1e-6)
    return Expected(inputs, directions, derivatives, excluded, scale, rounding)


def compare_gradients(
    s, expected: Expected, grads: Mapping[str, np.ndarray], dtype: str
) -> tuple[bool, list[str], list[dict]]:
    r"""Backend gradients against the differences. Returns ``(ok, problems, per-tensor figures)``.

    ``v``, ``t``: $|g - \hat g| \le \mathrm{atol}\,S + \mathrm{rtol}\,|\hat g|$ element-wise,
    $S$ the largest input-gradient magnitude of the case. A parameter along a unit
    direction $d$: $|\langle g, d\rangle - \hat g_d| \le \mathrm{atol}\,(\|g\| + S) + \mathrm{rtol}\,|\hat g_d|$.
    """
    tol = gradient_tolerance(dtype)
    S = expected.scale
    problems, figures = [], []
    trained = {p.name: p for p in s.params()}
    unexpected = sorted(set(grads) - set(trained) - {"v", "t"})
    if unexpected:
        problems.append(f"gradients for names the spec does not declare: {unexpected}")
    for name, fd in expected.inputs.items():
        g = grads.get(name)
        if g is None:
            problems.append(f"no gradient returned for input {name!r}")
            continue
        g = np.asarray(g, dtype=np.float64)
        if g.shape != fd.shape:
            problems.append(f"d/d{name}: expected shape {fd.shape}; received {g.shape}")
            continue
        err = np.abs(g - fd)
        bound = tol["atol"] * S + tol["rtol"] * np.abs(fd)
        bad = err > bound
        figures.append(
            {
                "name": f"d/d{name}",
                "max_abs": float(err.max()),
                "scaled": float(err.max() / S),
                "tolerance_used": float(np.max(err / bound)),
            }
        )
        if bad.any():
            i = np.unravel_index(int(np.argmax(err)), err.shape)
            problems.append(
                f"d/d{name}: {int(bad.sum())}/{err.size} elements differ from the finite "
                f"differences (max abs {err.max():.3g}, scale {S:.3g}); worst at "
                f"{tuple(int(k) for k in i)}: got {g[i]:.6g}, expected {fd[i]:.6g}"
            )
    for name, dirs in expected.directions.items():
        g = grads.get(name)
        if g is None:
            problems.append(
                f"no gradient for param {name!r}: not registered with the framework's "
                "autodiff, or detached from the output"
            )
            continue
        g = np.asarray(g, dtype=np.float64)
        if g.shape != trained[name].shape:
            problems.append(f"d/d{name}: expected shape {trained[name].shape}; received {g.shape}")
            continue
        norm = float(np.linalg.norm(g))
        worst = scaled = used = 0.0
        for d, fd in zip(dirs, expected.derivatives[name], strict=True):
            got = float(np.sum(g * d))
            err = abs(got - fd)
            bound = tol["atol"] * (norm + S) + tol["rtol"] * abs(fd)
            worst = max(worst, err)
            scaled = max(scaled, err / (norm + S))
            used = max(used, err / bound)
            if err > bound:
                problems.append(
                    f"d/d{name}: along a random direction got {got:.6g}, finite differences "
                    f"{fd:.6g} (|g| {norm:.3g}, scale {S:.3g})"
                )
                break
        figures.append(
            {"name": f"d/d{name}", "max_abs": worst, "scaled": scaled, "tolerance_used": used}
        )
    for name in sorted(expected.excluded):
        g = grads.get(name)
        if g is not None and np.any(np.abs(np.asarray(g, dtype=np.float64)) > tol["atol"] * S):
            problems.append(
                f"d/d{name}: expected no gradient (the spec's no_output_gradient: the output "
                f"does not depend on it); received max |g| {np.max(np.abs(g)):.3g}"
            )
    for f in figures:
        f["ok"] = not any(p.startswith(f["name"] + ":") for p in problems)
    return not problems, problems, figures
