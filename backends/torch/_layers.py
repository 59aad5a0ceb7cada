"""Shared blocks of the PyTorch backend: the module base and the layers, written once.

The blocks mirror ``fusion_ref/_layers.py`` name for name. Each parameterised
block is an ``nn.Module`` whose attribute names follow the canonical parameter
names, so ``state_dict()`` keys *are* the canonical names
(``encoder.0.attn.query.weight``, ``confidence.hidden.bias``, ...). Dense
weights are ``nn.Linear`` weights, stored ``(out, in)`` as canonically: nothing
is transposed.

Nothing here reads a tensor value on the host (no ``item``, ``any`` or
``nonzero`` calls, no boolean-mask indexing, no Python branch on a tensor):
discrete decisions are computed for every sample and applied with
``torch.where``/``gather``, so shapes never depend on data and every rule
compiles with ``torch.compile(fullgraph=True)``. The exceptions read CPU
tensors in eager calls only, where that costs no device round trip
(``host_readable``): ``bucket_sizes``, the sparse dispatch of the routing rules,
which ``sparse_dispatch`` never takes while compiling, tracing, exporting or
capturing a CUDA graph (see there), and ``modality_dropout``'s one draw per batch
(``batch_values``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple, overload

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusion_spec.spec import (
    FusionSpecBase,
    InputError,
    WeightsError,
    array_meta,
    as_numpy,
    check_arrays,
    check_flag,
    check_noise,
    check_params,
    describe,
    parse,
)
from fusion_spec.spec._checks import check_present, numpy_host

if TYPE_CHECKING:
    from torch.nn.modules.module import _IncompatibleKeys


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """``torch.nn.functional.dropout`` in training when ``p > 0``; the identity otherwise."""
    return F.dropout(x, p, training=True) if training and p > 0.0 else x


def gelu(x: Tensor) -> Tensor:
    """Exact GELU ``x Phi(x)`` (the erf form, ``approximate="none"``)."""
    return F.gelu(x, approximate="none")


def blend(g: Tensor, v: Tensor, t: Tensor) -> Tensor:
    """``g v + (1 - g) t`` as one ``torch.lerp`` kernel (four element-wise ops otherwise).

    In the promoted dtype of ``g`` and ``v`` (under autocast ``g`` comes out of a
    linear in bfloat16 while ``v`` is float32; ``lerp`` wants one dtype).
    """
    dtype = torch.promote_types(g.dtype, v.dtype)
    if g.dtype != dtype:
        g = g.to(dtype)
    if v.dtype != dtype:
        v, t = v.to(dtype), t.to(dtype)
    return torch.lerp(t, v, g)


def layer_norm(dim: int, eps: float) -> nn.LayerNorm:
    r"""Affine $\mathrm{LN}(x) = (x - \mu) / \sqrt{\sigma^2 + \epsilon} \odot w + b$, biased variance.

    ``eps`` comes from the spec (``layer_norm_eps``), never from a framework default.
    """
    return nn.LayerNorm(dim, eps=eps)


class FeedForward(nn.Module):
    r"""$\mathrm{FFN}(x) = \mathrm{drop}_o(W_d\,\mathrm{drop}_h(\mathrm{GELU}(W_u x + b_u)) + b_d)$.

    Canonical params ``up.weight (H, D)``, ``up.bias (H,)``, ``down.weight (D, H)``,
    ``down.bias (D,)``. ``hidden_dropout`` and ``output_dropout`` sit where the
    original's ``nn.Sequential`` had its ``nn.Dropout`` layers (0 where it had none).

    Shape: ``(..., D) -> (..., D)``.
    """

    def __init__(
        self, dim: int, hidden: int, *, hidden_dropout: float = 0.0, output_dropout: float = 0.0
    ):
        super().__init__()
        self.up = nn.Linear(dim, hidden)
        self.down = nn.Linear(hidden, dim)
        self.hidden_dropout = hidden_dropout
        self.output_dropout = output_dropout

    def extra_repr(self) -> str:
        return f"hidden_dropout={self.hidden_dropout}, output_dropout={self.output_dropout}"

    def forward(self, x: Tensor) -> Tensor:
        h = dropout(gelu(self.up(x)), self.hidden_dropout, self.training)  # (..., H)
        return dropout(self.down(h), self.output_dropout, self.training)  # (..., D)


class RouterMlp(nn.Module):
    r"""Logits $W_o\,\mathrm{drop}(\mathrm{GELU}(W_h x + b_h)) + b_o$ of a confidence or route head.

    Canonical params ``hidden.weight (D, 2D)``, ``hidden.bias``, ``out.weight (K, D)``,
    ``out.bias (K,)``. Shape: ``(B, 2D) -> (B, K)``.
    """

    def __init__(self, fan_in: int, hidden: int, classes: int, *, dropout: float = 0.0):
        super().__init__()
        self.hidden = nn.Linear(fan_in, hidden)
        self.out = nn.Linear(hidden, classes)
        self.dropout = dropout

    def extra_repr(self) -> str:
        return f"dropout={self.dropout}"

    def forward(self, x: Tensor) -> Tensor:
        return self.out(dropout(gelu(self.hidden(x)), self.dropout, self.training))


class Attention(nn.Module):
    r"""Multi-head attention with separate query/key/value/output projections.

    Per head $A = \mathrm{softmax}(Q K^\top / \sqrt{D/h})$, output
    $W_o [\mathrm{drop}(A) V] + b_o$; dropout acts on the attention weights in
    training, as in ``torch.nn.MultiheadAttention``. Canonical params
    ``{query,key,value,output}.{weight (D, D), bias (D,)}`` (the original's packed
    ``in_proj_weight`` split in that order).
    """

    def __init__(self, dim: int, heads: int, *, dropout: float = 0.0):
        super().__init__()
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.output = nn.Linear(dim, dim)
        self.heads = heads
        self.scale = 1.0 / math.sqrt(dim // heads)
        self.dropout = dropout

    def extra_repr(self) -> str:
        return f"heads={self.heads}, scale={self.scale:.6g}, dropout={self.dropout}"

    def mix(
        self,
        query: Tensor,
        keys: Tensor,
        key_mask: Tensor | None = None,
        need_weights: bool = True,
    ) -> tuple[Tensor, Tensor | None]:
        """Heads' weighted values before the output projection.

        ``query`` ``(B, Tq, D)``, ``keys`` (also the values) ``(B, Tk, D)``;
        ``key_mask`` ``(B, Tk)`` bool (a true entry per sample) gives masked keys the
        score ``-inf``, hence weight exactly 0.
        Returns ``mixed`` ``(B, Tq, D)`` and the weights ``(B, h, Tq, Tk)`` before dropout
        (``None`` unless ``need_weights``: only aux outputs read them).

        Over exactly two keys (the vector rules) ``mix_two`` computes the softmax of two
        scores as a sigmoid. Over token sequences, batched matmuls; without weights to
        return or attention dropout, ``F.scaled_dot_product_attention``.
        """
        if keys.shape[1] == 2:
            return self.mix_two(query, keys, key_mask, need_weights)
        h, dh = self.heads, query.shape[-1] // self.heads
        q = self.query(query).unflatten(-1, (h, dh)).transpose(1, 2)  # (B, h, Tq, dh)
        k = self.key(keys).unflatten(-1, (h, dh)).transpose(1, 2)  # (B, h, Tk, dh)
        v = self.value(keys).unflatten(-1, (h, dh)).transpose(1, 2)  # (B, h, Tk, dh)
        mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, Tk)
        dropping = self.training and self.dropout > 0.0
        if not need_weights and not dropping:
            mixed = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)
            return mixed.transpose(1, 2).flatten(-2), None  # (B, Tq, D)
        scores = (q * self.scale) @ k.transpose(-1, -2)  # (B, h, Tq, Tk)
        if mask is not None:
            scores = torch.where(mask, scores, -math.inf)
        weights = torch.softmax(scores, dim=-1)
        mixed = dropout(weights, self.dropout, self.training) @ v  # (B, h, Tq, dh)
        return mixed.transpose(1, 2).flatten(-2), weights if need_weights else None

    def _score_diff(self, query: Tensor, keys: Tensor, key_mask: Tensor | None) -> Tensor:
        """``score_0 - score_1`` of two keys ``(B, 2, D)`` per query and head: ``(B, Tq, h)``."""
        h, dh = self.heads, query.shape[-1] // self.heads
        q = self.query(query).unflatten(-1, (h, dh))  # (B, Tq, h, dh)
        # k_0 - k_1; the bias cancels. Under autograd ``b - b`` (exactly 0) keeps it in
        # the graph with its true gradient, 0, rather than none (DDP wants every
        # parameter to get one); without autograd it is one kernel fewer
        zero_bias = None
        if self.key.bias.requires_grad and torch.is_grad_enabled():
            zero_bias = self.key.bias - self.key.bias
        dk = F.linear(keys[:, 0] - keys[:, 1], self.key.weight, zero_bias)  # (B, D)
        diff = (q * dk.unflatten(-1, (h, dh))[:, None]).sum(dim=-1) * self.scale  # (B, Tq, h)
        if key_mask is not None:  # a masked key's score is -inf: weight exactly 0 or 1
            only_0 = (key_mask[:, 0] & ~key_mask[:, 1])[:, None, None]  # (B, 1, 1)
            only_1 = (key_mask[:, 1] & ~key_mask[:, 0])[:, None, None]
            diff = torch.where(only_0, math.inf, torch.where(only_1, -math.inf, diff))
        return diff

    def mix_two(
        self,
        query: Tensor,
        keys: Tensor,
        key_mask: Tensor | None = None,
        need_weights: bool = True,
    ) -> tuple[Tensor, Tensor | None]:
        r"""``mix`` over two keys $x_0, x_1$: the softmax of two scores is a sigmoid.

        $a_0 = \sigma(q \cdot (k_0 - k_1) \cdot s)$, $a_1 = 1 - a_0$ (computed as
        $\sigma(-\cdot)$), so the mix is $v_1 + a_0 (v_0 - v_1)$, and
        $k_0 - k_1 = W_k (x_0 - x_1)$: the key bias cancels and the key projection
        runs once per sample instead of once per token. With attention dropout (in
        training) the two dropped weights mix $v_0$ and $v_1$ directly. Same shapes as ``mix``.
        """
        h, dh = self.heads, query.shape[-1] // self.heads
        diff = self._score_diff(query, keys, key_mask)  # (B, Tq, h): score_0 - score_1
        v = self.value(keys).unflatten(-1, (h, dh))  # (B, 2, h, dh)
        w0 = torch.sigmoid(diff)  # (B, Tq, h)
        dropping = self.training and self.dropout > 0.0
        weights = None
        if need_weights or dropping:
            weights = torch.stack([w0, torch.sigmoid(-diff)], dim=-1)  # (B, Tq, h, 2)
        if dropping:
            d = F.dropout(weights, self.dropout, training=True)[..., None]  # (B, Tq, h, 2, 1)
            mixed = d[..., 0, :] * v[:, 0, None] + d[..., 1, :] * v[:, 1, None]  # (B, Tq, h, dh)
        else:
            mixed = blend(w0[..., None], v[:, 0, None], v[:, 1, None])  # (B, Tq, h, dh)
        out = weights.transpose(1, 2) if need_weights else None
        return mixed.flatten(-2), out  # (B, Tq, D), (B, h, Tq, 2)

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        key_mask: Tensor | None = None,
        need_weights: bool = True,
    ) -> tuple[Tensor, Tensor | None]:
        """``(B, Tq, D)``, ``(B, Tk, D)`` -> output ``(B, Tq, D)``, weights ``(B, h, Tq, Tk)``
        (``None`` unless ``need_weights``)."""
        mixed, weights = self.mix(query, keys, key_mask, need_weights)
        return self.output(mixed), weights

    def pooled(self, x: Tensor) -> Tensor:
        r"""Token mean of self-attention over ``x`` ``(B, T, D)``: ``(B, D)``.

        $\tfrac1T \sum_i (W_o m_i + b_o) = W_o (\tfrac1T \sum_i m_i) + b_o$, so the
        output projection runs once per sample instead of once per token. Over two
        tokens without attention dropout the mix is linear in the weights,
        $\tfrac12 \sum_i (v_1 + a_{i0} (v_0 - v_1)) = v_1 + \bar a_0 (v_0 - v_1)$: the
        weights are averaged over the queries before mixing (``(B, h)``, not
        ``(B, 2, h, dh)``).
        """
        if x.shape[1] != 2 or (self.training and self.dropout > 0.0):
            return self.output(self.mix(x, x, need_weights=False)[0].mean(dim=1))
        h, dh = self.heads, x.shape[-1] // self.heads
        a0 = torch.sigmoid(self._score_diff(x, x, None)).mean(dim=1)  # (B, h)
        v = self.value(x).unflatten(-1, (h, dh))  # (B, 2, h, dh)
        mixed = blend(a0[..., None], v[:, 0], v[:, 1])  # (B, h, dh): v_1 + a_0 (v_0 - v_1)
        return self.output(mixed.flatten(-2))


class EncoderLayer(nn.Module):
    r"""Post-norm layer $x = \mathrm{LN}_1(x + \mathrm{drop}(\mathrm{MHA}(x)))$,
    $x = \mathrm{LN}_2(x + \mathrm{FFN}(x))$, as ``torch.nn.TransformerEncoderLayer``.

    Dropout where the original has it: attention weights, after the FFN
    activation, and on both residual branches. Shape: ``(B, T, D) -> (B, T, D)``.
    """

    def __init__(self, dim: int, heads: int, ffn_mult: int, dropout: float, eps: float):
        super().__init__()
        self.attn = Attention(dim, heads, dropout=dropout)
        self.norm1 = layer_norm(dim, eps)
        self.ffn = FeedForward(dim, ffn_mult * dim, hidden_dropout=dropout, output_dropout=dropout)
        self.norm2 = layer_norm(dim, eps)
        self.dropout = dropout

    def extra_repr(self) -> str:
        return f"dropout={self.dropout}"

    def forward(self, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        a = self.attn(x, x, key_mask, need_weights=False)[0]
        x = self.norm1(x + dropout(a, self.dropout, self.training))
        return self.norm2(x + self.ffn(x))


def _same_device(a: torch.device, b: torch.device) -> bool:
    """``cuda`` and ``cuda:0`` are the same device (an index defaults to 0)."""
    return a.type == b.type and (a.index or 0) == (b.index or 0)


def tokens(v: Tensor, t: Tensor) -> Tensor:
    """The two-token sequence ``[v, t]``: ``(B, 2, D)``."""
    return torch.stack([v, t], dim=1)


class Presence(NamedTuple):
    """A call's presence mask, ``image`` and ``text`` ``(B,)`` bool, and its derived masks
    (all computed on the device: no host synchronisation)."""

    image: Tensor
    text: Tensor

    @property
    def both(self) -> Tensor:
        return self.image & self.text

    @property
    def neither(self) -> Tensor:
        return ~(self.image | self.text)

    @property
    def image_only(self) -> Tensor:
        return self.image & ~self.text

    @property
    def text_only(self) -> Tensor:
        return self.text & ~self.image

    def key_mask(self) -> Tensor:
        """``(B, 2)`` keys to attend to: the present tokens; both for a sample with neither
        (its output is replaced by zeros; an all-masked softmax would be NaN)."""
        return torch.stack([self.image, self.text], dim=1) | self.neither[:, None]

    def single_route(self, route: Tensor) -> Tensor:
        """``route`` where both are present, else the present modality's route (0 image,
        1 text), ``-1`` for neither."""
        single = torch.where(self.image, 0, torch.where(self.text, 1, -1)).to(route.dtype)
        return torch.where(self.both, route, single)

    def route_probs(self, probs: Tensor, route: Tensor) -> Tensor:
        """``probs`` ``(B, K)`` where both are present, else the one-hot of ``route``
        (zeros for ``-1``)."""
        classes = torch.arange(probs.shape[1], device=probs.device)
        onehot = (route[:, None] == classes).to(probs.dtype)
        return torch.where(self.both[:, None], probs, onehot)


def present_mean(x: Tensor, present: Presence | None) -> Tensor:
    """Mean of the tokens ``x`` ``(B, 2, D)``; with ``present``, of the present ones only."""
    mean = x.mean(dim=1)
    if present is None:
        return mean
    return torch.where(
        present.both[:, None], mean, torch.where(present.image[:, None], x[:, 0], x[:, 1])
    )


def categorical(probs: Tensor, u: Tensor) -> Tensor:
    """Route = first ``k`` with ``u < p_0 + ... + p_k``, the last index if none: ``(B,)`` int64
    (an index for ``gather``; the aux output ``route`` is int32, as in Keras).

    The cumulative sum of non-negative terms is non-decreasing, so the first such
    ``k`` is the number of inner boundaries ``cdf_k <= u`` (``k < K - 1``).
    """
    cdf = torch.cumsum(probs, dim=-1)[:, :-1]  # (B, K-1), the inner boundaries
    return (cdf <= u[:, None]).sum(dim=-1)


def argmax(probs: Tensor) -> Tensor:
    """Route = first index of the maximum: ``(B,)`` int64."""
    return torch.argmax(probs, dim=-1)


def select(route: Tensor, *branches: Tensor) -> Tensor:
    """Per sample, branch ``route[b]`` of ``branches`` (each ``(B, D)``)."""
    out = branches[-1]
    for k in range(len(branches) - 2, -1, -1):
        out = torch.where((route == k)[:, None], branches[k], out)
    return out


def poison_undecided(out: Tensor, probs: Tensor) -> Tensor:
    """NaN rows of ``out`` ``(B, D)`` where the route probabilities ``(B, K)`` are NaN.

    A NaN or infinite input gives NaN route probabilities; argmax would still pick
    a route and could return a finite row (``v`` for a NaN in ``t``). The spec says
    a non-finite input never gives a finite row, so the routed output is NaN there.
    """
    undecided = torch.isnan(probs.sum(dim=-1, keepdim=True))  # (B, 1): NaN iff any is NaN
    return torch.where(undecided, torch.full_like(out, float("nan")), out)


#: Routing rules' dispatch: ``"dense"`` computes the shared expensive path for every
#: sample and selects with ``torch.where`` (static shapes, no host synchronisation:
#: compiles, exports, CUDA-graph capturable); ``"sparse"`` sorts the samples into
#: one bucket per path and runs each path on its bucket only (one host read of the
#: bucket sizes, data-dependent shapes: eager only); ``"auto"`` picks per call.
DISPATCHES = ("auto", "dense", "sparse")

#: ``"auto"``: smallest batch at which a call on this device type goes sparse
#: (``None``: never). CPU: sparse already wins at B = 16 (``benchmarks/bench.py
#: --dispatch``); reading the bucket sizes of a CPU tensor costs no device round
#: trip. CUDA: dense, host-synchronisation-free and graph-capturable, until the
#: crossover is measured on a GPU (``tools/gpu_checks.py`` prints it).
SPARSE_MIN_BATCH: dict[str, int | None] = {"cpu": 1, "cuda": None}


#: Rows x ``dim`` per chunk of a chunked eval call (``FusionModule.chunked_eval``): 2**21
#: elements, 4096 rows at D = 512 (the encoder's matrix products then have 8192 token rows).
#: Peak memory of such a call is the output plus one chunk's intermediates, whatever B
#: (``benchmarks/memory_bench.py``).
EVAL_CHUNK_ELEMENTS = 2**21


def static_shapes_required() -> bool:
    """True while compiling, tracing, exporting or capturing a CUDA graph."""
    return (
        torch.compiler.is_compiling()
        or torch.jit.is_tracing()
        or torch.onnx.is_in_onnx_export()
        or (torch.cuda.is_available() and torch.cuda.is_current_stream_capturing())
    )


#: ``torch.func``'s test for its wrapped tensors (a private function: ``None`` where a
#: PyTorch lacks it, and then no call counts as transformed)
_functorch_wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", None)


def _transformed(x: Tensor) -> bool:
    """True for a tensor inside a ``torch.func`` transform (``vmap``, ``grad``): its
    values cannot be read on the host (``vmap``) and its shapes are per sample."""
    return _functorch_wrapped is not None and _functorch_wrapped(x)


def host_readable(x: Tensor) -> bool:
    """Whether reading ``x``'s values on the host is free and allowed: a CPU tensor (no
    device round trip) in an eager call (not while compiling, tracing or exporting,
    where shapes and branches must not depend on values, nor inside a ``torch.func``
    transform)."""
    return x.device.type == "cpu" and not static_shapes_required() and not _transformed(x)


def batch_values(*xs: Tensor) -> list[float]:
    """The values of one-element tensors (one draw for the batch), read on the host.
    For ``host_readable`` tensors only (the caller checks)."""
    return [x.item() for x in xs]


def as_dtype(value: float, dtype: torch.dtype) -> float:
    """``value`` rounded to ``dtype``, as a Python float: what torch compares a tensor of
    ``dtype`` against when given the scalar ``value`` (``x >= 0.7`` on float32 compares
    with ``float32(0.7)``, just below 0.7)."""
    host = _HOST_FLOATS.get(dtype)
    return float(host(value)) if host is not None else float(torch.tensor(value, dtype=dtype))


_HOST_FLOATS = {torch.float32: np.float32, torch.float64: np.float64}


def sparse_dispatch(dispatch: str, x: Tensor) -> bool:
    """Whether a routing rule's call on ``x`` ``(B, D)`` takes the sparse path.

    ``"auto"`` never does where shapes must be static (``static_shapes_required``),
    so ``torch.compile(fullgraph=True)``, ``torch.export`` and CUDA graphs always
    see the dense path, nor inside ``torch.func`` transforms (``vmap`` cannot read a
    value); otherwise it follows ``SPARSE_MIN_BATCH``.
    """
    if dispatch != "auto":
        return dispatch == "sparse"
    if static_shapes_required() or _transformed(x):
        return False
    threshold = SPARSE_MIN_BATCH.get(x.device.type)
    return threshold is not None and x.shape[0] >= threshold


def bucket_sizes(key: Tensor, buckets: int) -> tuple[Tensor, list[int]]:
    """Rows sorted by ``key`` ``(B,)`` (values ``0 .. buckets-1``) and each bucket's size.

    The sparse dispatch's one host read (the sizes become shapes): a stable sort
    puts bucket ``k``'s rows at ``order[start_k : start_k + size_k]``.
    """
    order = torch.argsort(key, stable=True)  # (B,)
    return order, torch.bincount(key, minlength=buckets).tolist()


def rows_of(x: Tensor, index: Tensor) -> Tensor:
    """``x[index]`` along the batch axis as ``index_select``: its backward is an
    ``index_add``, where advanced indexing's is an accumulating ``index_put`` (slower
    on the CPU)."""
    return x.index_select(0, index)


def unsort(order: Tensor, rows: Tensor) -> Tensor:
    """Rows given in ``order`` ``(B,)`` back in batch order: ``out[order[i]] = rows[i]``."""
    return rows.new_empty(rows.shape).index_copy(0, order, rows)


def straight_through(out: Tensor, probs: Tensor, route: Tensor) -> Tensor:
    """``out * (1 + r_k - stop_gradient(r_k))`` without rounding the forward value.

    ``r_k - r_k.detach()`` is exactly 0 forward, so ``out`` is returned
    unchanged, while ``r_k`` receives the gradient ``<out, dL/dout>``.
    """
    if not (probs.requires_grad and torch.is_grad_enabled()):
        return out  # nothing to carry a gradient: the forward value is ``out`` as is
    r_k = probs.gather(1, route.clamp(min=0)[:, None]).to(out.dtype)  # (B, 1); -1: no route
    return out + out * (r_k - r_k.detach())


def straight_through_routes(out: Tensor, probs: Tensor, outputs: tuple[Tensor, ...]) -> Tensor:
    """``out + sum_j (r_j - stop_gradient(r_j)) stop_gradient(y_j)`` over every route's
    output ``y_j`` ``(B, D)``: the forward value is ``out`` unchanged, and ``probs``
    ``(B, K)`` receives the gradient of the mixture ``sum_j r_j y_j``, ``<y_j, dL/dout>``
    per route. A non-finite ``y_j`` counts as 0, so a route's inf or NaN never reaches
    a sample routed elsewhere.
    """
    if not (probs.requires_grad and torch.is_grad_enabled()):
        return out  # nothing to carry a gradient: the forward value is ``out`` as is
    delta = (probs - probs.detach()).to(out.dtype)  # (B, K): exactly 0 forward
    for j, y in enumerate(outputs):
        held = torch.nan_to_num(y.detach(), nan=0.0, posinf=0.0, neginf=0.0)
        out = out + delta[:, j : j + 1] * held
    return out


def _under_torch_func(x: Tensor) -> bool:
    """Whether ``x`` is wrapped by a ``torch.func`` transform (never while compiling:
    ``torch.compile`` traces plain tensors)."""
    if torch.compiler.is_compiling():
        return False
    return torch._C._functorch.is_functorch_wrapped_tensor(x)


class RunningStats(nn.Module):
    r"""``input_norm="batch"`` of one modality: $\hat x = (x - \mu) / \sqrt{\sigma^2 + \epsilon}$ per feature.

    Training: $\mu$, $\sigma^2$ (biased) over the rows where the modality is present,
    gradients flowing through them; with fewer than two such rows, the running
    statistics. The buffers ``running_mean``, ``running_var`` then move by
    ``momentum`` towards $\mu$ and the unbiased variance, in place, without a host
    read. Eval: the running statistics. The rows of an absent modality (``absent``;
    ``None``: the rows not present) hold ``input_norm_absent``'s fill (``"zero"``: the
    normalised zero row; ``"mean"``: 0); other rows not present (padding) 0. Under ``torch.func``
    transforms (``vmap``, ``grad``, ``functional_call`` inside them) the buffers are not
    updated, as after ``torch.func.replace_all_batch_norm_modules_``: a vmapped call
    has one value per sample for one buffer, and ``grad`` refuses to mutate it.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))

    def forward(self, x: Tensor, present: Tensor | None, s, absent: Tensor | None = None) -> Tensor:
        # statistics in the buffers' precision (float32 under autocast, as BatchNorm):
        # a bfloat16 batch mean neither fits the float32 buffers nor keeps their digits
        out_dtype = x.dtype
        x = x.to(torch.promote_types(x.dtype, self.running_mean.dtype))
        mean, var = self.running_mean.to(x.dtype), self.running_var.to(x.dtype)
        if self.training:
            mean, var = mean.clone(), var.clone()  # the values before this call's update
            w = torch.ones_like(x[:, 0]) if present is None else present.to(x.dtype)  # (B,)
            n = w.sum()
            # weighted sums, not ``w @ x``: autocast would run a matmul in bfloat16
            mean_b = (w[:, None] * x).sum(0) / n.clamp(min=1)  # (D,)
            var_b = (w[:, None] * (x - mean_b).square()).sum(0) / n.clamp(min=1)  # (D,)
            enough = n >= 2
            if not _under_torch_func(x):
                with torch.no_grad():
                    m = s.input_norm_momentum
                    unbiased = var_b * (n / (n - 1).clamp(min=1))
                    self.running_mean.copy_(torch.where(enough, mean.lerp(mean_b, m), mean))
                    self.running_var.copy_(torch.where(enough, var.lerp(unbiased, m), var))
            mean, var = torch.where(enough, mean_b, mean), torch.where(enough, var_b, var)
        y = ((x - mean) * torch.rsqrt(var + s.input_norm_eps)).to(out_dtype)
        if present is None:
            return y
        absent = ~present if absent is None else absent
        fill = torch.where(absent[:, None], y, 0.0) if s.input_norm_absent == "zero" else 0.0
        return torch.where(present[:, None], y, fill)  # x is 0 on absent rows: y their fill


# --- the module base ------------------------------------------------------------------


class FusionModule(nn.Module):
    """Base of the nine fusion modules: ``(B, D), (B, D) -> (B, D)``.

    Subclasses set ``kind``, register their submodules in ``__init__`` under the
    canonical names, call ``reset_parameters()``, and implement the rule's math
    in ``fuse(v, t, *, noise, present, want_aux, **options) -> (fused, aux)``. The base owns what
    every rule shares: spec parsing, initialisation from the spec's
    distributions, canonical params in and out, input/option/noise checks and
    error wording.

    Args:
        spec: the rule spec: a spec object or anything ``spec.parse`` accepts.
        **fields: spec fields, as ``build`` takes them: ``GatedFusion(dim=32)`` is
            ``GatedFusion(spec.parse("gated", dim=32))``; with ``spec``, they override
            its fields.
        generator: a ``torch.Generator`` for ``reset_parameters()`` and for the
            uniforms of stochastic decisions when no ``noise`` is injected (on the
            device of the inputs); the global generator when ``None``.
            Element-wise dropout always uses PyTorch's global generator.
    """

    kind: ClassVar[str]
    #: True for the rules that route each sample to one of several paths.
    routes: ClassVar[bool] = False
    #: True for the rules whose eval call runs over chunks of the batch where autograd is
    #: off (``torch.no_grad``, ``torch.inference_mode``): each sample's output depends on
    #: that sample alone there, and the encoder's intermediates (FFN hidden layer
    #: ``(B, 2, 4D)``, ...) would otherwise take 11 times the inputs at B = 65536.
    chunked_eval: ClassVar[bool] = False
    #: The validated rule spec (each rule's module narrows it to its spec class).
    spec: FusionSpecBase

    def __init__(
        self, spec: Any = None, *, generator: torch.Generator | None = None, **fields: Any
    ):
        super().__init__()
        s = parse(self.kind if spec is None else spec, **fields)
        if s.kind != self.kind:
            raise InputError(
                f"{type(self).__name__}: argument 'spec' expected kind {self.kind!r}; "
                f"received kind {s.kind!r}"
            )
        self.spec = s
        self.generator = generator
        #: Rows x dim per chunk of a chunked eval call; 0 turns chunking off.
        self.eval_chunk_elements = EVAL_CHUNK_ELEMENTS
        # device -> generator seeded once from ``generator``, for a module moved off its device
        self._device_generators: dict[str, torch.Generator] = {}
        self.dropout_rate = float(getattr(s, "dropout", 0.0))
        self._default_options = s.check_call_options({})
        if s.projected():  # input_proj.{image,text}: Linear(width, dim) where a width differs
            self.input_proj = nn.ModuleDict(
                {m: nn.Linear(s.width(m), s.dim) for m in s.projected()}
            )
        if s.input_norm == "batch":
            self.input_norm = nn.ModuleDict(
                {"image": RunningStats(s.dim), "text": RunningStats(s.dim)}
            )

    @property
    def dim(self) -> int:
        """The output width ``D`` (``spec.dim``)."""
        return self.spec.dim

    def extra_repr(self) -> str:
        text = ", ".join(f"{k}={v!r}" for k, v in self.spec.model_dump().items())
        return text + (f", dispatch={self.dispatch!r}" if self.routes else "")

    @property
    def dispatch(self) -> str:
        """The routing rules' dispatch (``DISPATCHES``), checked whenever it is set: in
        ``__init__`` and on every later assignment (``module.dispatch = "dense"``)."""
        if not self.routes:
            raise AttributeError(f"{self.kind} does not route samples: it has no 'dispatch'")
        return self._dispatch

    @dispatch.setter
    def dispatch(self, dispatch: str) -> None:
        if not self.routes:
            raise InputError(
                f"{self.kind}: attribute 'dispatch' expected no assignment: the rule does "
                f"not route samples; received {describe(dispatch)}"
            )
        if not isinstance(dispatch, str) or dispatch not in DISPATCHES:
            raise InputError(
                f"{self.kind}: argument 'dispatch' expected one of {list(DISPATCHES)}; "
                f"received {describe(dispatch)}"
            )
        self._dispatch = dispatch

    # --- parameters -------------------------------------------------------------------
    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Draw every parameter from the spec's initial distribution.

        Not ``nn.Linear``'s own ``reset_parameters``: the spec fixes each
        distribution (Xavier bound of the original's packed attention projection,
        zero attention biases, ...) and which encoder layers start as copies
        (``tied_to``) of layer 0, as the original's ``deepcopy`` made them.
        """
        params = self._canonical_tensors()
        for p in self.spec.params():
            target, init = params[p.name], p.init
            generator = self._generator_for(target.device)
            if init.tied_to is not None:
                target.copy_(params[init.tied_to])
            elif init.kind == "uniform":
                target.uniform_(-init.bound, init.bound, generator=generator)
            elif init.kind == "normal":
                target.normal_(0.0, init.std, generator=generator)
            else:
                target.copy_(torch.from_numpy(init.array(p.shape)))

    def _canonical_tensors(self) -> dict[str, Tensor]:
        """Parameters and the state buffers (``input_norm``'s running statistics) by name."""
        return {**dict(self.named_parameters()), **dict(self.named_buffers())}

    def _generator_for(self, device: torch.device) -> torch.Generator | None:
        """``self.generator`` where it lives; on another device, a generator of that device
        seeded once from it (so a module built with a CPU generator keeps working after
        ``.to("cuda")``); ``None`` on ``meta``, which has no random numbers."""
        g = self.generator
        if g is None or _same_device(g.device, device):
            return g
        if device.type == "meta":
            return None
        key = str(device)
        if key not in self._device_generators:
            seed = int(torch.randint(0, 2**62, (), generator=g))  # once per device
            self._device_generators[key] = torch.Generator(device=device).manual_seed(seed)
        return self._device_generators[key]

    @torch.no_grad()
    def load_canonical(self, params: Mapping[str, Any]) -> None:
        """Copy canonical params (NumPy arrays or tensors) into the module's parameters.

        Raises ``spec.WeightsError`` naming missing, unexpected or mis-shaped entries.
        """
        check_params(self.spec, params, what="canonical params")
        own = self._canonical_tensors()
        for name, value in params.items():
            a = as_numpy(value)
            a = a.astype(np.float32) if a.dtype.kind != "f" else a  # ml_dtypes' bfloat16
            own[name].copy_(torch.from_numpy(np.array(a, order="C")))

    def canonical_params(self) -> dict[str, np.ndarray]:
        """The parameters under their canonical names: C-contiguous float32 NumPy arrays."""
        own = self._canonical_tensors()
        # np.array(order="C"), not np.ascontiguousarray, which turns a 0-d array into 1-d
        return {
            p.name: np.array(own[p.name].detach().to("cpu", torch.float32).numpy(), order="C")
            for p in self.spec.params()
        }

    # --- the call -------------------------------------------------------------------
    # The return type follows ``return_aux``: the fused tensor, or it and the aux dict.
    @overload
    def forward(
        self,
        v: Tensor | np.ndarray,
        t: Tensor | np.ndarray,
        present: Tensor | np.ndarray | None = None,
        *,
        image_mask: Tensor | np.ndarray | None = None,
        text_mask: Tensor | np.ndarray | None = None,
        noise: Mapping[str, Any] | None = None,
        return_aux: Literal[False] = False,
        **call_options: Any,
    ) -> Tensor: ...
    @overload
    def forward(
        self,
        v: Tensor | np.ndarray,
        t: Tensor | np.ndarray,
        present: Tensor | np.ndarray | None = None,
        *,
        image_mask: Tensor | np.ndarray | None = None,
        text_mask: Tensor | np.ndarray | None = None,
        noise: Mapping[str, Any] | None = None,
        return_aux: Literal[True],
        **call_options: Any,
    ) -> tuple[Tensor, dict[str, Tensor]]: ...
    @overload
    def forward(
        self,
        v: Tensor | np.ndarray,
        t: Tensor | np.ndarray,
        present: Tensor | np.ndarray | None = None,
        *,
        image_mask: Tensor | np.ndarray | None = None,
        text_mask: Tensor | np.ndarray | None = None,
        noise: Mapping[str, Any] | None = None,
        return_aux: bool = False,
        **call_options: Any,
    ) -> Tensor | tuple[Tensor, dict[str, Tensor]]: ...
    def forward(
        self,
        v: Tensor | np.ndarray,
        t: Tensor | np.ndarray,
        present: Tensor | np.ndarray | None = None,
        *,
        image_mask: Tensor | np.ndarray | None = None,
        text_mask: Tensor | np.ndarray | None = None,
        noise: Mapping[str, Any] | None = None,
        return_aux: bool = False,
        **call_options: Any,
    ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """Fuse ``v`` and ``t``.

        Args:
            v, t: ``(B, D)`` real floating tensors (or NumPy arrays) on the module's
                device; cast to the parameters' dtype (convert the module with
                ``.to(dtype)`` to compute in another precision). Either may be a
                token sequence ``(B, L, D)``: ``simple``, ``transformer_concat`` and
                ``cross_attention`` attend over every real token, the other rules
                read each modality's masked mean; one token without a mask is the
                vector call.
            present: optional ``(B, 2)`` bool (or integer 0/1) tensor: which of
                (image, text) each sample has; an integer mask holding another value
                is an ``InputError`` where its values are free to read (a NumPy
                array, a CPU tensor in an eager call; on a device, nonzero is
                present). ``None`` is all present and computes
                exactly what an all-true mask computes. An absent row is replaced by
                zeros with ``torch.where`` before anything reads it (a NaN there
                cannot leak; its gradient is exactly zero); the spec's
                ``missing_modality`` says what the rule computes without it; a sample
                with neither outputs zeros and aux ``neither`` reports it. An
                ordinary input for ``torch.compile``, ``torch.export`` and ONNX.
            image_mask, text_mask: optional ``(B, L_v)`` / ``(B, L_t)`` bool (or 0/1)
                padding masks of token sequences, True for a real token (as Hugging
                Face's ``attention_mask``; the opposite of ``key_padding_mask``).
                Padding is replaced by zeros before anything reads it; a modality
                whose tokens are all padding is absent (as ``present`` False).
            noise: optional ``{name: uniform [0, 1) tensor}``, exactly the spec's
                ``s.noise(B, training=self.training, **call_options)``; when
                ``None``, stochastic decisions draw ``torch.rand`` from
                ``self.generator`` on the inputs' device. Names, shapes and dtypes
                are checked; values only where given as NumPy arrays (reading a
                tensor's values would synchronise with the device).
            return_aux: also return the spec's aux outputs (margins omitted):
                values in the output dtype, decisions as 0/1 in the output dtype,
                ``route`` as int32 (as in the Keras backend). Without it, work that
                only aux outputs need (energy terms, attention weights, keep masks) is
                skipped: the output is the same either way.
            **call_options: the rule's call options (``use_hard_routing`` for
                ``shomr``, ``progress`` as a Python float for ``energy_aware_adaptive``).

        Returns:
            ``fused`` ``(B, D)``, or ``(fused, aux)`` with ``return_aux=True``.
            Under ``torch.autocast`` the math runs in the autocast dtype where
            autocast says so, and the output and float aux come back in the
            parameters' dtype (float32 for a float32 module) for every rule.

        Raises:
            spec.InputError: before any torch operation, for a bad argument.
        """
        key = None  # a plain call's signature, remembered once checked (not while tracing)
        masks = image_mask is not None or text_mask is not None
        if present is None and noise is None and not call_options and not masks:
            key = None if torch.compiler.is_compiling() else _signature(v, t, return_aux)
        if key is not None and key in self.__dict__.get("_checked", ()):
            options = self._default_options  # this signature passed every check before
        else:
            arrays = {"v": v, "t": t, "present": present}
            if masks:
                arrays.update(image_mask=image_mask, text_mask=text_mask)
            options = self._check_call(arrays, noise, return_aux, call_options)
            if key is not None:
                checked = self.__dict__.setdefault("_checked", set())
                if len(checked) >= _CHECKED_MAX:  # many batch sizes: start over
                    checked.clear()
                checked.add(key)
        v, t = self._tensor(v), self._tensor(t)
        if (v.dim() == 3 or t.dim() == 3) and not masks and _one_token(v) and _one_token(t):
            v, t = _vector(v), _vector(t)  # one token each, no padding: the vector call
        if v.dim() == 3 or t.dim() == 3 or masks:
            out, aux, m, dtype = self._forward_tokens(
                v, t, present, image_mask, text_mask, noise, options, return_aux
            )
        else:
            out, aux, m, dtype = self._forward_vectors(v, t, present, noise, options, return_aux)
        if out.dtype != dtype:
            out = out.to(dtype)
        if m is not None:
            out = torch.where(m.neither[:, None], 0.0, out)
            aux["neither"] = m.neither.to(dtype)
        if not return_aux:
            return out
        aux = {k: a.to(dtype) if a.is_floating_point() else a for k, a in aux.items()}
        return out, aux

    def _forward_vectors(self, v, t, present, noise, options, return_aux):
        """The vector call: ``(out, aux, presence, output dtype)`` before the common tail."""
        m = self._present(present)
        if m is not None:
            v = torch.where(m.image[:, None], v, 0.0)
            t = torch.where(m.text[:, None], t, 0.0)
        if "input_proj" in self._modules:  # widths other than dim: project first
            proj = self.input_proj
            if "image" in proj:
                v = proj["image"](v)
                v = v if m is None else torch.where(m.image[:, None], v, 0.0)
            if "text" in proj:
                t = proj["text"](t)
                t = t if m is None else torch.where(m.text[:, None], t, 0.0)
        if self.spec.input_norm == "batch":
            v = self.input_norm["image"](v, None if m is None else m.image, self.spec)
            t = self.input_norm["text"](t, None if m is None else m.text, self.spec)
        if m is not None:
            v, t = _stop_lone(self.spec, m, v, t)
        u = self._noise(v, noise, options)
        rows = self._chunk_rows(v, u)
        if rows is None:
            out, aux = self.fuse(v, t, noise=u, present=m, want_aux=return_aux, **options)
        else:
            out, aux = self._fuse_chunked(v, t, m, rows, return_aux, options)
        # One output dtype for every rule under autocast (a no-op otherwise): the rules
        # end in different ops (linear: the autocast dtype; layer norm: float32).
        return out, aux, m, v.dtype

    def _forward_tokens(self, v, t, present, image_mask, text_mask, noise, options, return_aux):
        """The token call (``fusion_ref``'s ``_sequences``): each modality as ``(B, L, D)``
        with its token weights ``w`` ``(B, L)`` (a real token of a present modality);
        padding and absent tokens replaced by zeros before anything reads them; then the
        rule over every token (``fuse_tokens``) or over each modality's masked mean."""
        seqs = [x if x.dim() == 3 else x[:, None] for x in (v, t)]
        device = seqs[0].device
        valid = [
            torch.ones(x.shape[:2], dtype=torch.bool, device=device)
            if mask is None
            else self._mask(mask)
            for x, mask in zip(seqs, (image_mask, text_mask), strict=True)
        ]
        m = self._present(present)
        if m is not None or image_mask is not None or text_mask is not None:
            here = [vd.sum(dim=1) > 0 for vd in valid]  # (B,) bool, on the device
            if m is not None:
                here = [here[0] & m.image, here[1] & m.text]
            m = Presence(*here)
            valid = [vd & h[:, None] for vd, h in zip(valid, here, strict=True)]
        seqs = [torch.where(w[..., None], x, 0.0) for x, w in zip(seqs, valid, strict=True)]
        s = self.spec
        for i, modality in enumerate(("image", "text")):
            if "input_proj" in self._modules and modality in self.input_proj:
                seqs[i] = torch.where(valid[i][..., None], self.input_proj[modality](seqs[i]), 0.0)
            if s.input_norm == "batch":
                B, L, D = seqs[i].shape
                absent = (valid[i].sum(dim=1) == 0)[:, None].expand(B, L).reshape(B * L)
                y = self.input_norm[modality](
                    seqs[i].reshape(B * L, D), valid[i].reshape(B * L), s, absent
                )
                seqs[i] = y.reshape(B, L, D)
        if m is not None:
            seqs = list(_stop_lone(s, m, *seqs))
        dtype = seqs[0].dtype
        u = self._noise(seqs[0], noise, options)
        if hasattr(self, "fuse_tokens"):
            out, aux = self.fuse_tokens(
                *seqs, valid, noise=u, present=m, want_aux=return_aux, **options
            )
        else:
            pooled = [pool(x, w) for x, w in zip(seqs, valid, strict=True)]
            out, aux = self.fuse(*pooled, noise=u, present=m, want_aux=return_aux, **options)
        return out, aux, m, dtype

    def _mask(self, mask: Any) -> Tensor:
        """A checked padding mask as bool on the module's device."""
        if not isinstance(mask, Tensor):
            mask = torch.from_numpy(np.array(mask, order="C"))
        mask = mask.to(self._param_device())
        return mask if mask.dtype == torch.bool else mask != 0

    if TYPE_CHECKING:  # ``module(v, t)`` is ``forward``'s (nn.Module types it ``Any``)
        __call__ = forward

    def _chunk_rows(self, v: Tensor, noise: dict) -> int | None:
        """Rows per chunk of this call; ``None``: one piece (training, autograd on, noise
        drawn, compiling or tracing, or a batch of at most one chunk)."""
        if (
            not self.chunked_eval
            or self.training
            or torch.is_grad_enabled()
            or noise
            or not self.eval_chunk_elements
            or static_shapes_required()
            or _transformed(v)
        ):
            return None
        rows = max(1, self.eval_chunk_elements // v.shape[-1])
        return rows if v.shape[0] > rows else None

    def _fuse_chunked(
        self, v: Tensor, t: Tensor, m: Presence | None, rows: int, want_aux: bool, options: dict
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``fuse`` over ``rows``-row chunks, each written into the output (and each aux
        output, all of them per sample) as it is done: no chunk's intermediates outlive it."""
        B = v.shape[0]
        out: Tensor | None = None
        aux: dict[str, Tensor] = {}
        for i in range(0, B, rows):
            part = slice(i, i + rows)
            pm = None if m is None else Presence(m.image[part], m.text[part])
            o, a = self.fuse(v[part], t[part], noise={}, present=pm, want_aux=want_aux, **options)
            if out is None:
                out = o.new_empty((B, *o.shape[1:]))  # (B, D)
                aux = {k: x.new_empty((B, *x.shape[1:])) for k, x in a.items()}
            out[part] = o
            for k, x in a.items():
                aux[k][part] = x
        return out, aux

    def fuse(
        self,
        v: Tensor,
        t: Tensor,
        *,
        noise: dict[str, Tensor],
        present: Presence | None = None,
        want_aux: bool = True,
        **options: Any,
    ):
        """The rule's math: ``(fused, aux)``. With ``want_aux=False`` (the call did not ask
        for aux outputs) a rule may skip what only its aux outputs need and return
        ``{}`` or a partial dict."""
        raise NotImplementedError

    # --- plumbing: the one checking layer ---------------------------------------------
    def _check_call(
        self, arrays: dict[str, Any], noise: Any, return_aux: Any, call_options: dict
    ) -> dict:
        """Every check of a call, on metadata only (no host sync, traceable); returns the options.

        ``arrays`` holds the spec's declared array arguments (``spec.inputs()``).
        """
        s = self.spec
        # the defaults, validated once (most calls pass no option)
        options = s.check_call_options(call_options) if call_options else self._default_options
        check_flag(s.kind, "return_aux", return_aux)
        batch = check_arrays(s, arrays, _meta)
        for name in ("present", "image_mask", "text_mask"):
            if arrays.get(name) is not None:
                check_present(s, _present_host(arrays[name]), name)
        device = self._param_meta()[1]
        for name, x in arrays.items():
            if isinstance(x, Tensor) and x.device != device:
                raise InputError(
                    f"{s.kind}: argument {name!r} expected a tensor on {device} (the module's "
                    f"device); received one on {x.device}"
                )
        if noise is not None:
            declared = s.noise(batch, training=self.training, **options)
            check_noise(s, noise, declared, _meta, numpy_host)
        return options

    def _tensor(self, x: Any) -> Tensor:
        """A checked argument as a tensor of the parameters' dtype, on their device."""
        dtype, device = self._param_meta()
        if not isinstance(x, Tensor):
            a = np.asarray(x)
            if a.dtype.kind != "f":  # ml_dtypes' bfloat16: torch.from_numpy cannot read it
                a = a.astype(np.float32)
            # np.array(order="C"): a negative-stride view has no torch equivalent
            x = torch.from_numpy(np.array(a, order="C")).to(device)
        # ``Tensor.to`` costs microseconds even when it has nothing to do
        return x if x.dtype == dtype else x.to(dtype)

    def _param_meta(self) -> tuple[torch.dtype, torch.device]:
        """The parameters' dtype and device, cached: walking ``parameters()`` costs
        microseconds per call. The cache is dropped whenever the parameters may move
        (``_apply``, behind ``.to``/``.double()``/``.cuda()``, and ``load_state_dict``).
        """
        meta = self.__dict__.get("_param_meta_cache")
        if meta is None:
            param = next(iter(self.parameters()))
            meta = self.__dict__["_param_meta_cache"] = (param.dtype, param.device)
        return meta

    def _param_device(self) -> torch.device:
        return self._param_meta()[1]

    def _apply(self, fn, recurse=True):
        self._forget_meta()
        return super()._apply(fn, recurse)

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> _IncompatibleKeys:
        """``nn.Module.load_state_dict``; a state_dict of another rule or spec (keys or
        shapes that differ) raises ``StateDictError`` naming them, before anything loads."""
        own = self.state_dict(keep_vars=True)
        problems = []
        if strict:
            missing = [k for k in own if k not in state_dict]
            unexpected = sorted(str(k) for k in state_dict if k not in own)
            problems += [f"missing keys {_few(missing)}"] if missing else []
            problems += [f"unexpected keys {_few(unexpected)}"] if unexpected else []
        for name, value in state_dict.items():
            shape = getattr(value, "shape", None)
            if name in own and shape is not None and tuple(shape) != tuple(own[name].shape):
                problems.append(f"{name!r} of shape {tuple(shape)} for {tuple(own[name].shape)}")
        if problems:
            raise StateDictError(
                f"{self.kind}: load_state_dict argument 'state_dict' expected this module's "
                f"parameters ({self.kind}, dim={self.spec.dim}); received {'; '.join(problems)} "
                "(a state_dict of another rule or spec? build the module from the spec it "
                "was saved with)"
            )
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def _load_from_state_dict(self, *args, **kwargs):
        self._forget_meta()
        return super()._load_from_state_dict(*args, **kwargs)

    def _forget_meta(self) -> None:
        """Drop what depends on the parameters' dtype and device: their cached metadata
        and the call signatures already checked against them."""
        self.__dict__.pop("_param_meta_cache", None)
        self.__dict__.pop("_checked", None)

    def _present(self, present: Any) -> Presence | None:
        """The checked mask as a ``Presence`` of bools on the module's device (no value
        check: that would read the tensor on the host)."""
        if present is None:
            return None
        if not isinstance(present, Tensor):
            present = torch.from_numpy(np.array(present, order="C"))
        present = present.to(self._param_device())
        if present.dtype != torch.bool:
            present = present != 0
        return Presence(present[:, 0], present[:, 1])

    def _noise(self, v: Tensor, noise: Mapping[str, Any] | None, options: dict) -> dict:
        """The declared noise arrays: injected (checked by ``_check_call``) or drawn uniform [0, 1).

        Noise is float64 for float64 inputs and float32 otherwise (a bfloat16
        uniform is too coarse to draw a categorical route).
        """
        declared = self.spec.noise(v.shape[0], training=self.training, **options)
        if not declared:  # a deterministic call (every eval call of most rules)
            return {}
        dtype = torch.float64 if v.dtype == torch.float64 else torch.float32
        if noise is None:
            # torch.compile cannot trace a Generator argument: without one, draws from
            # the global generator trace into the graph (fullgraph=True).
            generator = self._generator_for(v.device)
            extra = {} if generator is None else {"generator": generator}
            return {
                n.name: torch.rand(n.shape, device=v.device, dtype=dtype, **extra) for n in declared
            }
        out = {}
        for n in declared:
            u = noise[n.name]
            if not isinstance(u, Tensor):
                u = torch.from_numpy(np.array(np.asarray(u, dtype=np.float64), order="C"))
            out[n.name] = u.to(device=v.device, dtype=dtype)
        return out


class StateDictError(WeightsError, RuntimeError):
    """A state_dict that does not fit the module: a ``spec.WeightsError``, and the
    ``RuntimeError`` torch raises there, so code catching torch's error keeps working."""


def _few(names: list[str], limit: int = 8) -> str:
    """``names`` as a list, the first ``limit`` and a count of the rest."""
    rest = len(names) - limit
    return str(names[:limit]) + (f" and {rest} more" if rest > 0 else "")


#: At most this many call signatures are remembered as checked per module.
_CHECKED_MAX = 64


def _one_token(x: Tensor) -> bool:
    return x.dim() == 2 or x.shape[1] == 1


def _vector(x: Tensor) -> Tensor:
    return x if x.dim() == 2 else x[:, 0]


def pool(x: Tensor, w: Tensor) -> Tensor:
    """The mean of the real tokens of ``x`` ``(B, L, D)`` (``w`` ``(B, L)`` bool); the first
    token where there is none (an absent modality: its fill)."""
    count = w.sum(dim=1, keepdim=True)  # (B, 1)
    mean = torch.where(w[..., None], x, 0.0).sum(dim=1) / count.clamp(min=1).to(x.dtype)
    return torch.where(count > 0, mean, x[:, 0])


def token_keys(s, w: list[Tensor], present: Presence | None) -> Tensor:
    """The keys ``(B, L_v + L_t)`` an attending rule reads (``fusion_ref``'s ``token_keys``):
    ``key_mask``: real tokens of present modalities, every token for a sample with
    neither; ``zero_fill``: an absent modality is one zero token, its first."""
    w_v, w_t = w
    if present is None:
        return torch.cat([w_v, w_t], dim=1)
    if s.missing_modality == "key_mask":
        return torch.cat([w_v, w_t], dim=1) | present.neither[:, None]
    first = [torch.arange(x.shape[1], device=x.device) == 0 for x in w]
    # logical ops, not ``torch.where`` on bools (onnxruntime has no bool Where)
    image, text = present.image[:, None], present.text[:, None]
    w_v = (image & w_v) | (~image & first[0])
    w_t = (text & w_t) | (~text & first[1])
    return torch.cat([w_v, w_t], dim=1)


def key_mean(x: Tensor, keys: Tensor) -> Tensor:
    """Mean of the tokens of ``x`` ``(B, L, D)`` that are keys (at least one per sample)."""
    count = keys.sum(dim=1, keepdim=True).to(x.dtype)  # (B, 1)
    return torch.where(keys[..., None], x, 0.0).sum(dim=1) / count


def _signature(v: Any, t: Any, return_aux: Any) -> tuple | None:
    """What ``_check_call`` decides from for a call with only ``v``, ``t`` and ``return_aux``
    (no ``present``, noise or options): shapes, dtypes and devices of two plain tensors
    and a bool flag. ``None`` for anything else (NumPy arrays, tensor subclasses, a
    non-bool flag), which is checked on every call."""
    if type(v) is not Tensor or type(t) is not Tensor or type(return_aux) is not bool:
        return None
    return (v.shape, t.shape, v.dtype, t.dtype, v.device, t.device, return_aux)


def _stop_lone(s, m: Presence, v: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """``v``, ``t`` (after ``input_proj`` and ``input_norm``: the rule's input) with the
    gradient of the rows ``s.stopped_input_rows`` names stopped (``lone_gradient="stop"``:
    the present modality of a sample with one); the values are unchanged."""
    if not s.stops_lone_gradient():
        return v, t
    lone = m.image ^ m.text
    out = []
    for x, here in ((v, m.image), (t, m.text)):
        stop = (here & lone).reshape((-1,) + (1,) * (x.dim() - 1))
        out.append(torch.where(stop, x.detach(), x))
    return out[0], out[1]


def _present_host(present: Any) -> np.ndarray | None:
    """The values of an integer ``present`` where reading them is free: a NumPy array, or
    a CPU tensor in an eager call (``host_readable``); ``None`` for a bool mask or a
    tensor whose values would need a device synchronisation (not read: nonzero is present)."""
    if isinstance(present, np.ndarray):
        return present
    if isinstance(present, Tensor) and present.dtype != torch.bool and host_readable(present):
        return present.numpy()
    return None


def _meta(x: Any):
    """Shape and dtype kind of a call argument: tensor metadata only (traceable), else ``array_meta``."""
    if isinstance(x, Tensor):
        if x.is_floating_point():
            kind = "float"
        elif x.is_complex():
            kind = "complex"
        else:
            kind = "bool" if x.dtype == torch.bool else "int"
        return tuple(x.shape), kind
    return array_meta(x)
