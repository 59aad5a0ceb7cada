"""Shared blocks of the Keras 3 backend: the layer base and the math, written once.

The math functions mirror ``fusion_ref/_layers.py`` name for name, with
``keras.ops`` in place of NumPy, so that every Keras backend (JAX, PyTorch,
NumPy) computes the same function. Nothing here branches in Python on a tensor
value: discrete decisions are computed for every sample and applied with
``keras.ops.where``, so the layers trace under ``jit_compile=True``.

``p`` is the layer's parameter dict: canonical name -> Keras variable, where a
dense weight canonically stored ``(out, in)`` is held as a Keras kernel
``(in, out)`` under the same canonical name (see ``FusionLayer``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, NamedTuple

import keras
import numpy as np
from keras import ops

from fusion_spec.spec import (
    FusionError,
    Init,
    InputError,
    ParamSpec,
    SpecError,
    WeightsError,
    array_meta,
    as_numpy,
    check_arrays,
    check_flag,
    check_noise,
    check_params,
    describe,
    parse,
    parse_stored,
)
from fusion_spec.spec._checks import TOKEN_MASKS, check_present, numpy_host
from fusion_spec.spec._errors import dtype_kind

Drop = Callable[[Any], Any]

#: The keyword arguments of a call that are padding masks (``image_mask``, ``text_mask``).
PADDING_MASKS = tuple(TOKEN_MASKS.values())

#: ``matmul_precision`` values: float32 products (the default), or TensorFloat-32
#: (10-bit mantissa inputs, float32 accumulation) as an explicit opt-in.
MATMUL_PRECISIONS = ("float32", "tensorfloat32")


def matmul_precision_scope(precision: str):
    """The context in which a layer's matrix products run at ``precision``.

    JAX: ``jax.default_matmul_precision(precision)``. XLA on a GPU otherwise runs
    float32 matrix products in TF32 (errors up to 4e-4 on an H200, 40x the
    float32 tolerance); the precision is read when a product is traced, so the
    scope holds under ``jit`` too. Keras on torch computes float32 products in
    float32 unless ``torch.backends.cuda.matmul.allow_tf32`` is set (off by
    default); TensorFlow's TF32 switch is process-wide
    (``tf.config.experimental.enable_tensor_float_32_execution``), so neither has a
    per-layer scope: there the layer runs in whatever the process chose.
    """
    if keras.backend.backend() == "jax":
        import jax

        return jax.default_matmul_precision(precision)
    return contextlib.nullcontext()


def identity(x):
    return x


def dropout(rate: float, training: bool, seed: keras.random.SeedGenerator) -> Drop:
    """Element-wise dropout ``x * m / (1 - rate)``, ``m ~ Bernoulli(1 - rate)``, in training only.

    The same function as ``keras.layers.Dropout``: ``keras.random.dropout``
    drawing from the layer's ``SeedGenerator``.
    """
    if not training or rate == 0.0:
        return identity
    return lambda x: keras.random.dropout(x, rate, seed=seed)


# --- math ---------------------------------------------------------------------


def gelu(x):
    """Exact GELU ``x Phi(x)`` (erf form; ``keras.ops.gelu`` defaults to the tanh one)."""
    return ops.gelu(x, approximate=False)


def linear(p: Mapping, name: str, x):
    """``x W^T + b``: ``x`` ``(..., in)``, kernel ``W^T`` held ``(in, out)``; ``(..., out)``."""
    return ops.matmul(x, p[f"{name}.weight"]) + p[f"{name}.bias"]


def layer_norm(p: Mapping, name: str, x, eps: float):
    r"""$\mathrm{LN}(x) = (x - \mu) / \sqrt{\sigma^2 + \epsilon} \odot w + b$ over the last axis.

    $\sigma^2$ is the biased variance; $\epsilon$ comes from the spec
    (``layer_norm_eps``), never from Keras's ``LayerNormalization`` default.
    """
    mu = ops.mean(x, axis=-1, keepdims=True)
    centred = x - mu
    var = ops.mean(centred * centred, axis=-1, keepdims=True)
    return centred / ops.sqrt(var + eps) * p[f"{name}.weight"] + p[f"{name}.bias"]


def feed_forward(
    p: Mapping, name: str, x, *, drop_hidden: Drop = identity, drop_out: Drop = identity
):
    """``drop_out(down(drop_hidden(GELU(up(x)))))``: ``(..., D) -> (..., D)``."""
    return drop_out(linear(p, f"{name}.down", drop_hidden(gelu(linear(p, f"{name}.up", x)))))


def attention(
    p: Mapping, name: str, query, keys, heads: int, *, drop: Drop = identity, key_mask=None
):
    r"""Multi-head attention with separate query/key/value/output projections.

    $A = \mathrm{softmax}(Q K^\top / \sqrt{D/h})$ per head, output $W_o\,[A V] + b_o$.
    ``query`` is ``(B, Tq, D)``, ``keys`` (also the values) ``(B, Tk, D)``;
    ``drop`` acts on the attention weights (as ``torch.nn.MultiheadAttention``'s
    dropout); ``key_mask`` ``(B, Tk)`` bool (a true entry per sample) gives masked
    keys the score ``-inf``, hence weight exactly 0. Returns the output
    ``(B, Tq, D)`` and the weights ``(B, h, Tq, Tk)`` before dropout.
    """
    Tq, Tk, D = _length(query), _length(keys), query.shape[2]
    dh = D // heads
    q = ops.transpose(
        ops.reshape(linear(p, f"{name}.query", query), (-1, Tq, heads, dh)), (0, 2, 1, 3)
    )  # (B, h, Tq, dh)
    k = ops.transpose(
        ops.reshape(linear(p, f"{name}.key", keys), (-1, Tk, heads, dh)), (0, 2, 1, 3)
    )  # (B, h, Tk, dh)
    v = ops.transpose(
        ops.reshape(linear(p, f"{name}.value", keys), (-1, Tk, heads, dh)), (0, 2, 1, 3)
    )  # (B, h, Tk, dh)
    scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * (1.0 / math.sqrt(dh))  # (B, h, Tq, Tk)
    if key_mask is not None:
        scores = ops.where(key_mask[:, None, None, :], scores, -math.inf)
    weights = ops.softmax(scores, axis=-1)
    mixed = ops.matmul(drop(weights), v)  # (B, h, Tq, dh)
    mixed = ops.reshape(ops.transpose(mixed, (0, 2, 1, 3)), (-1, Tq, D))  # (B, Tq, D)
    return linear(p, f"{name}.output", mixed), weights


def _length(x):
    """The token count of ``x`` ``(B, T, D)``: static where known, else (a TensorFlow graph of
    unknown length) the dynamic one, which ``ops.reshape`` takes as well."""
    return ops.shape(x)[1] if x.shape[1] is None else x.shape[1]


def encoder_layer(
    p: Mapping, name: str, x, heads: int, eps: float, drop: Drop = identity, key_mask=None
):
    """Post-norm layer ``x = LN1(x + drop(MHA(x))); x = LN2(x + drop(FFN(x)))``, ``(B, T, D)``.

    Dropout where ``torch.nn.TransformerEncoderLayer`` has it: attention
    weights, after the FFN activation, and on both residual branches.
    """
    a = attention(p, f"{name}.attn", x, x, heads, drop=drop, key_mask=key_mask)[0]
    x = layer_norm(p, f"{name}.norm1", x + drop(a), eps)
    return layer_norm(
        p,
        f"{name}.norm2",
        x + feed_forward(p, f"{name}.ffn", x, drop_hidden=drop, drop_out=drop),
        eps,
    )


def tokens(v, t):
    """The two-token sequence ``[v, t]``: ``(B, 2, D)``."""
    return ops.stack([v, t], axis=1)


def _stop_lone(s, m, v, t):
    """``v``, ``t`` (after ``input_proj`` and ``input_norm``: the rule's input) with the
    gradient of the rows ``s.stopped_input_rows`` names stopped (``lone_gradient="stop"``:
    the present modality of a sample with one); the values are unchanged."""
    if not s.stops_lone_gradient():
        return v, t
    lone = ops.logical_xor(m.image, m.text)
    out = []
    for x, here in ((v, m.image), (t, m.text)):
        stop = ops.reshape(ops.logical_and(here, lone), (-1,) + (1,) * (len(x.shape) - 1))
        out.append(ops.where(stop, ops.stop_gradient(x), x))
    return tuple(out)


class Presence(NamedTuple):
    """A call's presence mask, ``image`` and ``text`` ``(B,)`` bool, and its derived masks."""

    image: Any
    text: Any

    @property
    def both(self):
        return ops.logical_and(self.image, self.text)

    @property
    def neither(self):
        return ops.logical_not(ops.logical_or(self.image, self.text))

    @property
    def image_only(self):
        return ops.logical_and(self.image, ops.logical_not(self.text))

    @property
    def text_only(self):
        return ops.logical_and(self.text, ops.logical_not(self.image))

    def key_mask(self):
        """``(B, 2)`` keys to attend to: the present tokens; both for a sample with neither
        (its output is replaced by zeros; an all-masked softmax would be NaN)."""
        return ops.logical_or(ops.stack([self.image, self.text], axis=1), self.neither[:, None])

    def single_route(self, route):
        """``route`` where both are present, else the present modality's route (0 image,
        1 text), ``-1`` for neither."""
        single = ops.where(self.image, 0, ops.where(self.text, 1, -1))
        return ops.where(self.both, route, ops.cast(single, route.dtype))

    def route_probs(self, probs, route):
        """``probs`` ``(B, K)`` where both are present, else the one-hot of ``route``
        (zeros for ``-1``)."""
        classes = ops.arange(probs.shape[1], dtype=route.dtype)
        onehot = ops.cast(route[:, None] == classes, probs.dtype)
        return ops.where(self.both[:, None], probs, onehot)


def present_mean(x, present: Presence | None):
    """Mean of the tokens ``x`` ``(B, 2, D)``; with ``present``, of the present ones only."""
    mean = ops.mean(x, axis=1)
    if present is None:
        return mean
    return ops.where(
        present.both[:, None], mean, ops.where(present.image[:, None], x[:, 0], x[:, 1])
    )


def pool(x, w):
    """The mean of the real tokens of ``x`` ``(B, L, D)`` (``w`` ``(B, L)`` bool; ``None``: all
    real): ``(B, D)``, the first token where there is none (an absent modality: its
    fill). One token is returned exactly."""
    if w is None:
        return ops.mean(x, axis=1)
    count = ops.sum(ops.cast(w, x.dtype), axis=1)[:, None]  # (B, 1)
    mean = ops.sum(ops.where(w[..., None], x, ops.zeros_like(x)), axis=1) / ops.maximum(count, 1.0)
    return ops.where(count > 0, mean, x[:, 0])


def token_keys(s, w, present: Presence | None):
    """The keys ``(B, L_v + L_t)`` bool an attention rule attends to (and averages over).

    ``w`` holds each modality's token weights ``(B, L)`` (real tokens of a present
    modality), ``None`` when every token is real (then every token is a key: ``None``).
    ``missing_modality="key_mask"``: those tokens; every token for a sample with
    neither (its output is zeros; an all-masked softmax would be NaN). ``"zero_fill"``:
    an absent modality is one zero token, its first (as the vector rule's zero row).
    """
    if w is None:
        return None
    w_v, w_t = w
    if s.missing_modality == "key_mask":
        return ops.logical_or(ops.concatenate([w_v, w_t], axis=1), present.neither[:, None])
    # the first token of each sequence, for any (even symbolic) length
    first = [ops.cumsum(ops.ones_like(x, dtype="int32"), axis=1) == 1 for x in w]  # (B, L)
    w_v = ops.where(present.image[:, None], w_v, first[0])
    w_t = ops.where(present.text[:, None], w_t, first[1])
    return ops.concatenate([w_v, w_t], axis=1)


def key_mean(x, keys):
    """Mean of the tokens ``x`` ``(B, L, D)`` that are keys (``keys`` ``(B, L)`` bool, at least
    one per sample; ``None``: all of them)."""
    if keys is None:
        return ops.mean(x, axis=1)
    count = ops.sum(ops.cast(keys, x.dtype), axis=1)[:, None]  # (B, 1)
    return ops.sum(ops.where(keys[..., None], x, ops.zeros_like(x)), axis=1) / count


def categorical(probs, u):
    """Route = first ``k`` with ``u < p_0 + ... + p_k``, the last index if none: ``(B,)`` int32.

    The cumulative sum of non-negative terms is non-decreasing, so the first such
    ``k`` is the number of inner boundaries ``cdf_k <= u`` (``k < K - 1``).
    """
    cdf = ops.cumsum(probs, axis=-1)[:, :-1]  # (B, K-1), the inner boundaries
    return ops.sum(ops.cast(cdf <= u[:, None], "int32"), axis=-1)


def argmax(probs):
    """Route = first index of the maximum: ``(B,)`` int32."""
    return ops.cast(ops.argmax(probs, axis=-1), "int32")


def select(route, *branches):
    """Per sample, branch ``route[b]`` of ``branches`` (each ``(B, D)``)."""
    out = branches[-1]
    for k in range(len(branches) - 2, -1, -1):
        out = ops.where((route == k)[:, None], branches[k], out)
    return out


def poison_undecided(out, probs):
    """NaN rows of ``out`` ``(B, D)`` where the route probabilities ``(B, K)`` are NaN.

    A NaN or infinite input makes the route probabilities NaN; the argmax would
    still pick a route and could return a finite row (``v`` for a NaN in ``t``).
    A non-finite input never gives a finite row, so such a row is NaN.
    """
    undecided = ops.isnan(ops.sum(probs, axis=-1, keepdims=True))  # (B, 1): NaN iff any is
    return ops.where(undecided, ops.full_like(out, float("nan")), out)


def batch_mean(x):
    """Mean over the batch axis of ``x`` ``(B,)``: 0 (not NaN) for an empty batch."""
    count = ops.maximum(ops.cast(ops.shape(x)[0], x.dtype), 1.0)
    return ops.sum(x) / count


def straight_through(out, probs, route):
    """``out * (1 + r_k - stop_gradient(r_k))`` without rounding the forward value.

    ``r_k - stop_gradient(r_k)`` is exactly 0 forward, so ``out`` is returned
    unchanged, while ``r_k`` receives the gradient ``<out, dL/dout>``.
    """
    r_k = ops.take_along_axis(probs, ops.maximum(route, 0)[:, None], axis=1)  # (B, 1); -1: none
    return out + out * (r_k - ops.stop_gradient(r_k))


def straight_through_routes(out, probs, outputs):
    """``out + sum_j (r_j - stop_gradient(r_j)) stop_gradient(y_j)`` over every route's
    output ``y_j`` ``(B, D)``: the forward value is ``out`` unchanged, and ``probs``
    ``(B, K)`` receives the gradient of the mixture ``sum_j r_j y_j``. A non-finite
    ``y_j`` counts as 0, so a route's inf or NaN never reaches a sample routed elsewhere.
    """
    delta = probs - ops.stop_gradient(probs)  # (B, K): exactly 0 forward
    for j, y in enumerate(outputs):
        y = ops.stop_gradient(y)
        held = ops.where(ops.isfinite(y), y, ops.zeros_like(y))
        out = out + delta[:, j : j + 1] * held
    return out


# --- the layer base ---------------------------------------------------------------


def _is_dense(p: ParamSpec) -> bool:
    """A linear/attention weight, canonically ``(out, in)``, held by Keras as ``(in, out)``."""
    return p.name.endswith(".weight") and len(p.shape) == 2


def _keras_name(p: ParamSpec) -> str:
    """Keras variable name: ``attn.query.weight`` -> ``attn_query_kernel`` (held transposed).

    Dots become underscores: the PyTorch backend of Keras registers each variable
    as a ``torch.nn.Parameter``, whose names cannot contain ``.``.
    """
    name = p.name[: -len("weight")] + "kernel" if _is_dense(p) else p.name
    return name.replace(".", "_")


def _initializer(init: Init, seed: int | None):
    """The spec's initial distribution as a Keras initializer (tied copies are assigned after)."""
    if init.values is not None:
        return _given(init.array((len(init.values),)).astype(np.float32))
    if init.kind == "uniform":
        return keras.initializers.RandomUniform(-init.bound, init.bound, seed=seed)
    if init.kind == "normal":
        return keras.initializers.RandomNormal(0.0, init.std, seed=seed)
    return keras.initializers.Constant(init.value)


def _given(value: np.ndarray):
    """An initializer returning ``value`` (already in the variable's layout).

    Building with canonical params skips the spec's random initializers: on JAX
    each of them compiles a random-number program per shape, only to be
    overwritten by ``load_canonical``.
    """

    def initializer(shape, dtype=None):
        if tuple(shape) != value.shape:
            raise WeightsError(f"initial value of shape {value.shape} for a variable {tuple(shape)}")
        return value

    return initializer


#: Seeds are non-negative 31-bit ints (Keras initializers and TensorFlow's RNG).
SEED_MAX = 2**31 - 1


def _host_array(x: Any) -> Any:
    """A NumPy argument made C-contiguous float (Keras's torch backend reads neither
    negative strides nor ml_dtypes' bfloat16); anything else unchanged."""
    if isinstance(x, np.ndarray) and (x.dtype.kind != "f" or not x.flags.c_contiguous):
        return np.array(x, dtype=x.dtype if x.dtype.kind == "f" else np.float32, order="C")
    return x


def _as_bool(mask):
    """A padding (or presence) mask as a bool tensor: an integer one is nonzero where True."""
    mask = ops.convert_to_tensor(mask)
    if keras.backend.standardize_dtype(mask.dtype) != "bool":
        mask = ops.not_equal(mask, 0)
    return mask


def _propagated(mask, x, keras_mask):
    """The padding mask of tokens ``x``: ``mask`` if given, else the mask Keras propagated
    with ``x`` where it is one of its tokens (rank 2 for a rank-3 ``x``), else ``None``."""
    if mask is not None or keras_mask is None:
        return mask
    if len(x.shape) == 3 and len(keras_mask.shape) == 2:
        return keras_mask
    return None


def _fusion_error(e: BaseException) -> FusionError | None:
    """The ``FusionError`` that ``e`` wraps (its cause or context chain), if any."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, FusionError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


#: The dtype policies the layer computes in (any float dtype name is one too).
FLOAT_POLICIES = ("float32", "float64", "mixed_float16", "mixed_bfloat16")


def _check_dtype(kind: str, dtype: Any) -> None:
    """The layer's ``dtype`` argument (``None``: the global policy) names a float (or mixed
    float) dtype policy.

    Keras accepts ``"int32"`` or ``"bool"`` and then rounds every weight to it (a wrong
    result without an error), and quantized policies would be ignored by this layer.
    """
    expected = f"a floating dtype or dtype policy (e.g. {', '.join(map(repr, FLOAT_POLICIES))})"
    try:
        policy = keras.dtype_policies.get(dtype)  # None: the global policy
    except (ValueError, TypeError) as e:
        raise InputError(
            f"{kind}: argument 'dtype' expected {expected}; received {describe(dtype)} "
            f"(Keras: {e})"
        ) from None
    quantized = getattr(policy, "quantization_mode", None)
    if quantized or not all(
        dtype_kind(d) == "float" for d in (policy.variable_dtype, policy.compute_dtype)
    ):
        detail = f"{quantized} quantization" if quantized else (
            f"variables {policy.variable_dtype}, computation {policy.compute_dtype}"
        )
        if dtype is None:
            detail = f"the global policy {policy.name!r}: {detail}"
        raise InputError(
            f"{kind}: argument 'dtype' expected {expected}; received {describe(dtype)} ({detail})"
        )
    if "float64" in (policy.variable_dtype, policy.compute_dtype) and not _float64_available():
        raise InputError(
            f"{kind}: argument 'dtype' expected a dtype policy that JAX computes in: float64 "
            "needs JAX's x64 mode (jax.config.update('jax_enable_x64', True) before any array "
            f"is made), without which every float64 array is float32; received {describe(dtype)}"
        )


def _float64_available() -> bool:
    """False only on Keras's JAX backend without x64 mode (float64 silently becomes float32)."""
    if keras.backend.backend() != "jax":
        return True
    import jax

    return bool(jax.config.jax_enable_x64)


#: Keyword arguments of a layer that are not spec fields: ``keras.layers.Layer``'s own
#: (``name``, ``dtype``, ``trainable``, ...) and the routing layers' (``energy_loss``, ...).
#: Every other keyword of a layer's constructor (and of ``build``) is a spec field.
LAYER_ARGUMENTS = frozenset(
    {
        "activity_regularizer",
        "autocast",
        "dtype",
        "input_dim",
        "input_shape",
        "name",
        "trainable",
        "energy_loss",
        "monitor",
        "track_progress",
    }
)


#: Rows x ``dim`` per chunk of a chunked eval call (``FusionLayer.chunked_eval``): 2**21
#: elements, 4096 rows at D = 512 (the encoder's matrix products then have 8192 token rows).
EVAL_CHUNK_ELEMENTS = 2**21


def _eager(x) -> bool:
    """Whether ``x`` is a concrete tensor of an eager call (not a JAX tracer under
    ``jit``, nor a TensorFlow graph tensor): only there is the batch size a number."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return not isinstance(x, jax.core.Tracer)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.executing_eagerly()
    return True


class FusionLayer(keras.layers.Layer):
    """Keras layer computing one fusion rule ``f(v, t)``: ``(B, D), (B, D) -> (B, D)``.

    Subclasses set ``kind`` and ``fuse``, the rule's math as a plain function
    ``fuse(s, p, v, t, *, training, noise, drop, **options) -> (fused, aux)``.

    Args:
        spec: the rule spec: a spec object or anything ``spec.parse`` accepts.
        seed: seeds the initializers and the ``SeedGenerator`` behind element-wise
            dropout and the stochastic decisions when no ``noise`` is injected.
        matmul_precision: ``"float32"`` (default: on JAX every matrix product of
            the layer is pinned to full float32, which XLA's GPU default is not)
            or ``"tensorfloat32"``, the opt-in to TF32 products on JAX (faster on
            GPUs, judged by the conformance suite's ``tensorfloat32`` tolerance
            policy). On the torch and tensorflow backends only ``"float32"`` is
            accepted: their TF32 switches are process-wide (see
            ``matmul_precision_scope``).
        **kwargs: spec fields, as ``build`` takes them: ``GatedFusion(dim=32)`` is
            ``GatedFusion(spec.parse("gated", dim=32))``, and with ``spec`` they override
            its fields (as the PyTorch modules do); a misspelt field is a ``SpecError``
            naming the closest fields. The keywords of ``LAYER_ARGUMENTS`` (``name``,
            ``dtype``, ``trainable``, ...) go to ``keras.layers.Layer`` instead.

    Weights: one Keras variable per canonical parameter, named after it; dense
    weights canonically ``(out, in)`` are held transposed as kernels ``(in, out)``
    (the ``transposed`` list): ``attn.query.weight`` is the variable
    ``attn_query_kernel``, ``norm1.bias`` is ``norm1_bias``. Load and export canonical
    params with ``load_canonical`` and ``canonical_params``.

    Notes:
        ``get_config()`` carries the spec (as a dict) and the seed; ``.keras`` files
        hold the weights but not the ``SeedGenerator``'s position, so a loaded
        layer restarts the random stream of its config seed. Keras 3.15's
        functional API assumes every call of one layer instance returns the
        structure of its first call: use separate instances for calls with and
        without ``return_aux`` in one model.
    """

    kind: ClassVar[str]
    fuse: ClassVar[Callable]
    #: Whether ``fuse`` reads every token (``fusion_ref.TOKEN_RULES``: the attending rules);
    #: the others get each modality's masked mean.
    reads_tokens: ClassVar[bool] = False
    #: True for the rules whose eager eval call runs over chunks of the batch (each
    #: sample's output depends on that sample alone there): their intermediates (the
    #: FFN hidden layer ``(B, 2, 4D)``, every route's path) would otherwise take 11 to
    #: 14 times the inputs at B = 65536. A compiled call (``jit``, a ``tf.function``)
    #: runs whole: XLA plans its memory itself.
    chunked_eval: ClassVar[bool] = False

    def __init__(
        self,
        spec: Any = None,
        seed: int | None = None,
        matmul_precision: str = "float32",
        **kwargs: Any,
    ):
        fields = {k: x for k, x in kwargs.items() if k not in LAYER_ARGUMENTS}
        kwargs = {k: x for k, x in kwargs.items() if k in LAYER_ARGUMENTS}
        # first: a bad spec, field or dtype is named before Keras sees them
        s = parse(self.kind if spec is None else spec, **fields)
        _check_dtype(s.kind, kwargs.get("dtype"))
        try:
            super().__init__(**kwargs)
        except (ValueError, TypeError) as e:  # an unknown keyword, a bad name or trainable
            given = ", ".join(f"{k}={describe(x)}" for k, x in kwargs.items())
            raise InputError(
                f"{s.kind}: layer arguments expected keras.layers.Layer's (name, dtype, "
                f"trainable, ...) with valid values; received {given} "
                f"(Keras: {str(e).splitlines()[0]})"
            ) from None
        if seed is not None and (
            not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or not 0 <= seed < SEED_MAX
        ):
            raise InputError(
                f"{s.kind}: argument 'seed' expected None or an int in [0, 2**31 - 1); "
                f"received {describe(seed)}"
            )
        if s.kind != self.kind:
            raise InputError(
                f"{type(self).__name__}: argument 'spec' expected kind {self.kind!r}; "
                f"received kind {s.kind!r}"
            )
        backend = keras.backend.backend()
        allowed = MATMUL_PRECISIONS if backend == "jax" else ("float32",)
        if matmul_precision not in allowed:
            why = (
                ""
                if backend == "jax"
                else " (TF32 is a process-wide switch there: "
                "torch.backends.cuda.matmul.allow_tf32 or "
                "tf.config.experimental.enable_tensor_float_32_execution)"
            )
            raise InputError(
                f"{s.kind}: argument 'matmul_precision' expected one of {list(allowed)} on "
                f"Keras's {backend} backend; received {matmul_precision!r}{why}"
            )
        self.spec = s
        self.seed = seed
        self.matmul_precision = matmul_precision
        self.seed_generator = keras.random.SeedGenerator(seed)
        #: Rows x dim per chunk of a chunked eval call; 0 turns chunking off.
        self.eval_chunk_elements = EVAL_CHUNK_ELEMENTS
        self.param_specs = tuple(s.params())
        self.transposed = tuple(p.name for p in self.param_specs if _is_dense(p))
        self._canonical: dict[str, keras.Variable] = {}
        self._initial_values: dict[str, np.ndarray] | None = None

    @property
    def dim(self) -> int:
        """The output width ``D`` (``spec.dim``)."""
        return self.spec.dim

    # --- Keras lifecycle ----------------------------------------------------------
    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name}, built={self.built}, spec={self.spec!r}>"

    def build(self, v_shape=None, t_shape=None, present_shape=None):
        for name, modality, shape in (("v", "image", v_shape), ("t", "text", t_shape)):
            width = self.spec.width(modality)
            if shape is not None and (len(shape) not in (2, 3) or shape[-1] not in (None, width)):
                raise InputError(
                    f"{self.kind}: input {name!r} expected shape (B, {width}) or "
                    f"(B, L_{name}, {width}); received shape {tuple(shape)}"
                )
        if present_shape is not None and (len(present_shape) != 2 or present_shape[-1] != 2):
            raise InputError(
                f"{self.kind}: input 'present' expected shape (B, 2) (image, text per "
                f"sample); received shape {tuple(present_shape)}"
            )
        initial = self._initial_values or {}
        for i, p in enumerate(self.param_specs):
            shape = p.shape[::-1] if p.name in self.transposed else p.shape
            if p.name in initial:  # build(s, params): no random draw that load would overwrite
                init = _given(initial[p.name])
            else:
                init = _initializer(
                    p.init, None if self.seed is None else (int(self.seed) + i) % SEED_MAX
                )
            self._canonical[p.name] = self.add_weight(
                name=_keras_name(p), shape=shape, initializer=init, trainable=p.trained
            )
        self._initial_values = None
        for p in self.param_specs:
            if p.init.tied_to is not None and p.name not in initial:
                # a copy: assigning the variable itself shares its buffer on JAX, which a
                # compiled train step then donates twice
                source = self._canonical[p.init.tied_to]
                self._canonical[p.name].assign(ops.convert_to_numpy(source.value))

    def __call__(self, v=None, t=None, *args: Any, **kwargs: Any):
        """The one checking layer: every argument is checked before Keras or a backend sees it.

        ``layer(v, t)``, ``layer(v, t, present)`` or, Keras's convention for several
        inputs, ``layer([v, t])`` and ``layer([v, t, present])``; the padding masks of token
        sequences as keywords, ``image_mask=``, ``text_mask=``.
        """
        if t is None and isinstance(v, (list, tuple)) and len(v) == 3 and not args:
            v, t, args = v[0], v[1], (v[2],)
        v, t = self._pair(v, t)
        if len(args) > 1:
            raise InputError(
                f"{self.kind}: expected at most three positional arguments (v, t, present) and "
                f"keywords training, noise, return_aux, call options; received "
                f"{2 + len(args)} positional"
            )
        present = args[0] if args else kwargs.pop("present", None)
        training = kwargs.get("training")
        noise = kwargs.get("noise")
        options = {
            k: x
            for k, x in kwargs.items()
            if k not in ("training", "noise", "return_aux", *PADDING_MASKS)
        }
        arrays = {"v": v, "t": t, "present": present}
        arrays.update((name, kwargs.get(name)) for name in PADDING_MASKS)
        self._check_call(arrays, training, noise, kwargs.get("return_aux", False), options)
        if noise is not None:
            kwargs["noise"] = {name: _host_array(u) for name, u in noise.items()}
        for name in PADDING_MASKS:
            if kwargs.get(name) is None:
                kwargs.pop(name, None)
            elif isinstance(kwargs[name], np.ndarray):  # keeps its bool/int dtype
                kwargs[name] = np.array(kwargs[name], order="C")
        if present is None:
            return super().__call__(_host_array(v), _host_array(t), **kwargs)
        if isinstance(present, np.ndarray):  # keeps its bool/int dtype (_host_array casts)
            present = np.array(present, order="C")
        return super().__call__(_host_array(v), _host_array(t), present, **kwargs)

    def _check_call(self, arrays: dict, training, noise, return_aux, call_options: dict) -> None:
        """Metadata checks of a call (shape, dtype, names, flags); values only of NumPy
        noise and NumPy masks (a backend tensor's would need a synchronisation)."""
        s = self.spec
        training = check_flag(s.kind, "training", training, allow_none=True)
        check_flag(s.kind, "return_aux", return_aux)
        options = self._call_options(call_options, bool(training))
        batch = check_arrays(s, arrays, array_meta)
        for name in ("present", *PADDING_MASKS):
            mask = arrays.get(name)
            check_present(s, mask if isinstance(mask, np.ndarray) else None, name)
        if noise is not None:
            declared = s.noise(batch, training=training, **options)
            check_noise(s, noise, declared, array_meta, numpy_host)

    def call(
        self,
        v,
        t,
        present=None,
        training=None,
        noise=None,
        return_aux=False,
        image_mask=None,
        text_mask=None,
        v_mask=None,
        t_mask=None,
        **call_options,
    ):
        """Fuse ``v`` and ``t``.

        Args:
            v, t: ``(B, D)`` real floating embeddings, or token sequences ``(B, L_v, D)``,
                ``(B, L_t, D)`` (either or both; a vector is one token), cast to the
                layer's compute dtype (docs/errors.md, "Input dtypes and values").
            present: optional ``(B, 2)`` bool (or integer 0/1) tensor: which of (image,
                text) each sample has; an integer mask holding another value is an
                ``InputError`` where given as a NumPy array (a backend tensor is not
                read: nonzero is present); ``None`` is all present and computes exactly
                what an all-true mask computes. An absent row is replaced by zeros
                with ``ops.where`` before anything reads it (a NaN there cannot leak;
                its gradient is exactly zero); the spec's ``missing_modality`` says
                what the rule computes without it; a sample with neither outputs
                zeros and aux ``neither`` reports it. A ``keras.Input`` in functional
                models.
            image_mask, text_mask: optional padding masks ``(B, L_v)``, ``(B, L_t)`` of
                token sequences, bool or integer 0/1: True (nonzero) is a real token, as
                Hugging Face's ``attention_mask`` (the opposite of PyTorch's
                ``key_padding_mask``). Padding is replaced by zeros with ``ops.where``
                before anything reads it (a NaN there cannot leak; its gradient is exactly
                zero); a modality whose tokens are all padding is absent, as if
                ``present`` said so (aux ``neither`` is then returned too).
                ``simple``, ``transformer_concat`` and ``cross_attention`` attend over
                every real token; the other rules read each modality's masked mean.
            v_mask, t_mask: not for callers: Keras's mask propagation fills them with the
                masks its layers attach to ``v`` and ``t`` (``Embedding(mask_zero=True)``,
                ``Masking``), which then serve as ``image_mask`` and ``text_mask`` where those
                are not given (a mask of a token sequence only: ``(B, L)`` for ``(B, L, D)``).
            training: Keras training flag (``None`` is eval). Stochastic decisions
                (in training, and in eval where the spec samples, e.g.
                ``eval_routing="sample"``) read ``noise`` or draw from the layer's
                ``SeedGenerator``; in training element-wise dropout (rate
                ``spec.dropout``) is applied.
            noise: optional ``{name: uniform [0, 1) array}``, exactly the spec's
                ``s.noise(B, training=..., **call_options)``. Names, shapes and dtypes
                are checked; values (in ``[0, 1)``, no NaN) where given as NumPy
                arrays (reading a backend tensor's values would synchronise).
            return_aux: also return the spec's aux outputs (margins omitted):
                values as floats, decisions as float 0/1, ``route`` as int32 (as
                in the PyTorch backend; int64 would need JAX's x64 mode).
            **call_options: the rule's call options (``use_hard_routing`` for
                ``shomr``; ``progress`` for ``energy_aware_adaptive``: a float, or a
                scalar tensor or variable, which a compiled step can take).

        Returns:
            ``fused`` ``(B, D)``, or ``(fused, aux)`` with ``return_aux=True``
            (``cross_attention``'s ``attention_weights`` is ``(B, heads, L_v + L_t)``).

        Raises:
            spec.InputError: from ``__call__``, before Keras or a backend sees the
                arguments (docs/errors.md).
        """
        s = self.spec
        training = bool(training)
        options = self._call_options(call_options, training)
        # on the variables' device (Keras on torch: CUDA when present), even for CPU inputs
        v, t = ops.convert_to_tensor(v), ops.convert_to_tensor(t)
        image_mask = _propagated(image_mask, v, v_mask)
        text_mask = _propagated(text_mask, t, t_mask)
        if len(v.shape) == 3 or len(t.shape) == 3:  # static: the vector path stays as it was
            out, aux, m = self._fuse_tokens(
                v, t, present, (image_mask, text_mask), training, noise, options
            )
            return self._finish(out, aux, m, training, return_aux)
        m = self._present(present)
        if m is not None:
            v = ops.where(m.image[:, None], v, ops.zeros_like(v))
            t = ops.where(m.text[:, None], t, ops.zeros_like(t))
        if s.projected():  # widths other than dim: input_proj.{image,text} first
            v, t = self._project(v, t, m)
        if s.input_norm == "batch":
            v = self._input_norm(v, None if m is None else m.image, "image", training)
            t = self._input_norm(t, None if m is None else m.text, "text", training)
        if m is not None:
            v, t = _stop_lone(s, m, v, t)
        u = self._noise(v, training, noise, options)
        drop = dropout(float(getattr(s, "dropout", 0.0)), training, self.seed_generator)
        rows = self._chunk_rows(v, u, training)
        with matmul_precision_scope(self.matmul_precision):
            if rows is None:
                out, aux = type(self).fuse(
                    s, self._canonical, v, t, training=training, noise=u, drop=drop, present=m,
                    **options,
                )
            else:
                out, aux = self._fuse_chunked(v, t, m, rows, drop, options)
        return self._finish(out, aux, m, training, return_aux)

    def _finish(self, out, aux, m, training: bool, return_aux: bool):
        """Zeros for a sample with neither modality (aux ``neither``), then the hook."""
        if m is not None:
            out = ops.where(m.neither[:, None], ops.zeros_like(out), out)
            aux["neither"] = ops.cast(m.neither, out.dtype)
        self._after_call(aux, training)
        return (out, aux) if return_aux else out

    def _fuse_tokens(self, v, t, present, padding, training: bool, noise, options: dict):
        """The rule on token sequences (``fusion_ref.forward``'s token path): returns
        ``(fused, aux, presence)``.

        Padding and absent tokens become zeros (``ops.where``); ``input_proj`` maps every
        token; ``input_norm="batch"`` reads every real token of a present modality. The
        attending rules (``reads_tokens``) get the sequences and their token weights;
        the others each modality's masked mean.
        """
        s = self.spec
        x, w, m = self._sequences(v, t, present, padding)
        if s.projected():
            x = self._project_tokens(x, w)
        if s.input_norm == "batch":
            x = [
                self._input_norm_tokens(x[i], None if w is None else w[i], modality, training)
                for i, modality in enumerate(("image", "text"))
            ]
        if m is not None:
            x = list(_stop_lone(s, m, *x))
        if not type(self).reads_tokens:
            x = [pool(x[0], None if w is None else w[0]), pool(x[1], None if w is None else w[1])]
        u = self._noise(x[0], training, noise, options)
        drop = dropout(float(getattr(s, "dropout", 0.0)), training, self.seed_generator)
        extra = {"token_weights": w} if type(self).reads_tokens else {}
        with matmul_precision_scope(self.matmul_precision):
            out, aux = type(self).fuse(
                s, self._canonical, *x, training=training, noise=u, drop=drop, present=m,
                **extra, **options,
            )
        return out, aux, m

    def _sequences(self, v, t, present, padding):
        """Both modalities as token sequences ``(B, L, D)`` (a vector is one token), their
        token weights ``(w_v, w_t)`` (``(B, L)`` bool: a real token of a present modality)
        and the call's ``Presence``.

        Without a presence or padding mask both are ``None`` (every token is real) and
        the sequences are returned as they are. Otherwise a modality whose tokens are
        all padding is absent (the masks compose with ``present`` by AND), and padding
        and absent tokens are replaced by zeros.
        """
        x = [y if len(y.shape) == 3 else y[:, None] for y in (v, t)]  # (B, L, D) each
        if present is None and all(pad is None for pad in padding):
            return x, None, None
        valid = [
            ops.ones_like(y[..., 0], dtype="bool") if pad is None else _as_bool(pad)
            for y, pad in zip(x, padding, strict=True)
        ]  # (B, L) each
        here = [ops.any(w, axis=1) for w in valid]  # (B,) each
        given = self._present(present)
        if given is not None:
            here = [ops.logical_and(here[0], given.image), ops.logical_and(here[1], given.text)]
        valid = [ops.logical_and(w, h[:, None]) for w, h in zip(valid, here, strict=True)]
        x = [ops.where(w[..., None], y, ops.zeros_like(y)) for y, w in zip(x, valid, strict=True)]
        return x, valid, Presence(*here)

    def _project_tokens(self, x, w):
        """Each modality's tokens mapped to ``dim`` by ``input_proj`` where its width differs;
        padding and absent tokens stay 0 (not the projection's bias)."""
        x = list(x)
        for i, modality in enumerate(("image", "text")):
            if modality in self.spec.projected():
                # over B * L rows, as the vector path's (B, D_w) matmul: a batched (B, L,
                # D_w) matmul takes another kernel (NumPy's differs in the last bit)
                B, L, width = ops.shape(x[i])
                with matmul_precision_scope(self.matmul_precision):
                    y = linear(self._canonical, f"input_proj.{modality}",
                               ops.reshape(x[i], (-1, width)))  # (B * L, D)
                y = ops.reshape(y, (B, L, self.spec.dim))  # (B, L, D)
                x[i] = y if w is None else ops.where(w[i][..., None], y, ops.zeros_like(y))
        return x

    def _input_norm_tokens(self, x, w, modality: str, training: bool):
        """``input_norm="batch"`` of token sequences ``(B, L, D)``: the statistics over every
        real token (``w`` ``(B, L)``; ``None``: all), as over ``B * L`` rows."""
        D = x.shape[-1]
        flat = ops.reshape(x, (-1, D))  # (B * L, D)
        if w is None:
            y = self._input_norm(flat, None, modality, training)
        else:
            absent = ops.logical_not(ops.any(w, axis=1))[:, None]  # (B, 1): no real token
            absent = ops.reshape(ops.broadcast_to(absent, ops.shape(w)), (-1,))  # (B * L,)
            y = self._input_norm(flat, ops.reshape(w, (-1,)), modality, training, absent)
        return ops.reshape(y, ops.shape(x))  # (B, L, D)

    def _chunk_rows(self, v, noise: dict, training: bool) -> int | None:
        """Rows per chunk of this call; ``None``: one piece (training, noise drawn, a
        compiled call, or a batch of at most one chunk)."""
        if training or noise or not self.chunked_eval or not self.eval_chunk_elements:
            return None
        batch = v.shape[0]
        if not isinstance(batch, int) or not _eager(v):
            return None
        rows = max(1, self.eval_chunk_elements // int(v.shape[-1]))
        return rows if batch > rows else None

    def _fuse_chunked(self, v, t, m: Presence | None, rows: int, drop, options: dict):
        """``fuse`` over ``rows``-row chunks, concatenated: one chunk's intermediates at a
        time. Per-sample aux outputs are concatenated; ``merge_aux`` finishes the others."""
        outs, auxes = [], []
        for i in range(0, v.shape[0], rows):
            pm = None if m is None else Presence(m.image[i : i + rows], m.text[i : i + rows])
            o, a = type(self).fuse(
                self.spec, self._canonical, v[i : i + rows], t[i : i + rows],
                training=False, noise={}, drop=drop, present=pm, **options,
            )
            outs.append(o)
            auxes.append(a)
        aux = {
            k: ops.concatenate([a[k] for a in auxes], axis=0)
            for k in auxes[0]
            if len(auxes[0][k].shape)
        }
        return ops.concatenate(outs, axis=0), self.merge_aux(aux)

    def merge_aux(self, aux: dict) -> dict:
        """The aux outputs of a chunked call from its per-sample ones (concatenated over
        the chunks): a rule with a batch-wide aux output (``energy_loss``) computes it here."""
        return aux

    def _project(self, v, t, m):
        """``v``, ``t`` mapped to ``dim`` by ``input_proj`` where a width differs; an absent
        row stays 0 (not the projection's bias)."""
        out = {"image": v, "text": t}
        for modality in self.spec.projected():
            with matmul_precision_scope(self.matmul_precision):
                y = linear(self._canonical, f"input_proj.{modality}", out[modality])
            if m is not None:
                keep = getattr(m, modality)[:, None]
                y = ops.where(keep, y, ops.zeros_like(y))
            out[modality] = y
        return out["image"], out["text"]

    def _input_norm(self, x, present, modality: str, training: bool, absent=None):
        r"""``input_norm="batch"`` of one modality: $(x - \mu) / \sqrt{\sigma^2 + \epsilon}$.

        Training: the batch's mean and biased variance over the rows where the
        modality is present (the running statistics with fewer than two), and the
        running statistics (non-trainable variables) move by the spec's momentum
        towards them (unbiased variance); eval: the running statistics. The rows of an
        absent modality (``absent``; ``None``: the rows not present) hold
        ``input_norm_absent``'s fill (``"zero"``: the normalised zero row; ``"mean"``: 0);
        other rows not present (padding) 0.
        """
        s = self.spec
        mean_var = self._canonical[f"input_norm.{modality}.running_mean"]
        var_var = self._canonical[f"input_norm.{modality}.running_var"]
        mean, var = ops.cast(mean_var.value, x.dtype), ops.cast(var_var.value, x.dtype)
        if training:
            w = ops.ones_like(x[:, 0]) if present is None else ops.cast(present, x.dtype)  # (B,)
            n = ops.sum(w)
            count = ops.maximum(n, 1.0)
            # weighted sums, not ``w @ x``: a product would run at the backend's default
            # matmul precision (TF32 or bfloat16 passes on GPUs), outside matmul_precision
            mean_b = ops.sum(w[:, None] * x, axis=0) / count  # (D,)
            var_b = ops.sum(w[:, None] * ops.square(x - mean_b), axis=0) / count  # (D,)
            enough = n >= 2.0
            m = s.input_norm_momentum
            unbiased = ops.stop_gradient(var_b * (n / ops.maximum(n - 1.0, 1.0)))
            mean_var.assign(ops.where(enough, mean + m * (ops.stop_gradient(mean_b) - mean), mean))
            var_var.assign(ops.where(enough, var + m * (unbiased - var), var))
            mean, var = ops.where(enough, mean_b, mean), ops.where(enough, var_b, var)
        y = (x - mean) * ops.rsqrt(var + s.input_norm_eps)
        if present is None:
            return y
        zeros = ops.zeros_like(y)
        if s.input_norm_absent == "zero":  # x is 0 on absent rows: y is their fill
            absent = ops.logical_not(present) if absent is None else absent
            zeros = ops.where(absent[:, None], y, zeros)
        return ops.where(present[:, None], y, zeros)

    def _pair(self, v, t):
        """``(v, t)`` from ``layer(v, t)`` or ``layer([v, t])``."""
        if t is None and isinstance(v, (list, tuple)):
            if len(v) != 2:
                raise InputError(
                    f"{self.kind}: expected two inputs, layer(v, t) or layer([v, t]); "
                    f"received a {type(v).__name__} of {len(v)} (three: [v, t, present])"
                )
            return v[0], v[1]
        if isinstance(v, (list, tuple)):
            raise InputError(
                f"{self.kind}: expected layer(v, t) or layer([v, t]); received a "
                f"{type(v).__name__} and 't' as well"
            )
        return v, t

    def _call_options(self, call_options: dict, training: bool) -> dict:
        """The spec checks the call options; subclasses add tensor-valued ones."""
        return self.spec.check_call_options(call_options)

    def _after_call(self, aux: dict, training: bool) -> None:
        """Hook after the math (``energy_aware_adaptive`` adds its energy loss here)."""

    def compute_output_shape(self, v_shape, t_shape, present_shape=None):
        return (v_shape[0], self.spec.dim)

    def compute_mask(self, inputs, previous_mask=None):
        """No mask on the output: the fused ``(B, dim)`` has no tokens left to mask (this
        layer consumes the padding masks of its token inputs)."""
        return None

    def compute_output_spec(
        self,
        v,
        t,
        present=None,
        training=None,
        noise=None,
        return_aux=False,
        image_mask=None,
        text_mask=None,
        v_mask=None,
        t_mask=None,
        **call_options,
    ):
        s = self.spec
        options = self._call_options(call_options, bool(training))
        batch = v.shape[0]
        out = keras.KerasTensor((batch, s.dim), dtype=self.compute_dtype)
        if not return_aux:
            return out
        image_mask = _propagated(image_mask, v, v_mask)
        text_mask = _propagated(text_mask, t, t_mask)
        masked = present is not None or image_mask is not None or text_mask is not None
        lengths = tuple(x.shape[1] if len(x.shape) == 3 else 1 for x in (v, t))

        def declared(unknown: int):  # a symbolic token count (None) read as ``unknown``
            tokens = tuple(unknown if n is None else n for n in lengths)
            return s.call_aux(
                batch, training=bool(training), present=masked, tokens=tokens, **options
            )

        aux = {}
        for a, b in zip(declared(1), declared(2), strict=True):  # sizes that differ are None
            if a.role != "margin":
                shape = tuple(x if x == y else None for x, y in zip(a.shape, b.shape, strict=True))
                dtype = "int32" if a.dtype == "int" else self.compute_dtype
                aux[a.name] = keras.KerasTensor(shape, dtype=dtype)
        return out, aux

    def get_config(self):
        base_config = super().get_config()
        config = {
            "spec": self.spec.model_dump(mode="json"),
            "seed": self.seed,
            "matmul_precision": self.matmul_precision,
        }
        return {**base_config, **config}

    @classmethod
    def from_config(cls, config):
        """The layer of a saved config (``keras.saving.load_model``).

        Keras's own ``from_config`` turns every constructor error into a ``TypeError``
        ("could not be deserialized properly") that hides it. A ``FusionError`` (an
        edited ``.keras`` file with an invalid spec, seed or precision) is raised
        instead as a ``SpecError``: its first line is the rule's, naming the field, what
        was expected and what was received. (A ``SpecError``, not an ``InputError``:
        Keras wraps any ``TypeError`` again on the way up.) A stored spec from before a
        field keeps its meaning (``spec.parse_stored``).
        """
        config = dict(config)
        if "spec" not in config:
            raise SpecError(
                f"{cls.kind}: the saved Keras config of {cls.__name__} expected a 'spec' "
                f"entry; received keys {sorted(config)}"
            )
        try:
            if isinstance(config.get("spec"), dict):
                config["spec"] = parse_stored(config["spec"]).model_dump(mode="json")
            return super().from_config(config)
        except (TypeError, FusionError) as e:
            cause = _fusion_error(e)
            if cause is None:
                raise
            raise SpecError(
                f"{cause}\n(in the saved Keras config of {cls.__name__} "
                f"{config.get('name')!r})",
                getattr(cause, "errors", None),
            ) from cause

    # --- canonical parameters -------------------------------------------------
    def load_canonical(self, params: Mapping[str, Any]) -> None:
        """Assign canonical params (names and ``(out, in)`` shapes of ``spec.params()``).

        Raises ``spec.WeightsError`` naming missing, unexpected or mis-shaped entries.
        """
        values = self._held_values(params)
        if not self.built:
            self._initial_values = values
            self.build()
            return
        for p in self.param_specs:
            value = values[p.name]
            variable = self._canonical[p.name]
            if value.shape != tuple(variable.shape):
                raise WeightsError(
                    f"{self.kind}: param {p.name!r} expected Keras shape {tuple(variable.shape)}; "
                    f"received {value.shape}"
                )
            variable.assign(value)

    def _held_values(self, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Checked canonical ``params`` as C-contiguous float32 in the variables' layout."""
        check_params(self.spec, params, what="canonical params")
        values = {}
        for p in self.param_specs:
            value = np.asarray(as_numpy(params[p.name]), dtype=np.float32)
            if p.name in self.transposed:
                value = value.T
            values[p.name] = np.array(value, order="C")  # 0-d stays 0-d
        return values

    @property
    def canonical_variables(self) -> dict[str, keras.Variable]:
        """Canonical name -> Keras variable; those in ``transposed`` hold ``W^T`` ``(in, out)``."""
        return dict(self._canonical)

    def canonical_params(self) -> dict[str, np.ndarray]:
        """The weights under their canonical names: C-contiguous float32, dense ``(out, in)``."""
        params = {}
        for p in self.param_specs:
            value = ops.convert_to_numpy(self._canonical[p.name].value)
            if p.name in self.transposed:
                value = value.T
            assert value.shape == p.shape, (p.name, value.shape, p.shape)
            params[p.name] = np.array(value, dtype=np.float32, order="C")
        return params

    # --- plumbing ---------------------------------------------------------------
    @staticmethod
    def _present(present) -> Presence | None:
        """The checked mask as a ``Presence`` of bools (integers: nonzero is present)."""
        if present is None:
            return None
        present = ops.convert_to_tensor(present)
        if keras.backend.standardize_dtype(present.dtype) != "bool":
            present = ops.not_equal(present, 0)
        return Presence(present[:, 0], present[:, 1])

    def _noise(self, v, training: bool, noise: Mapping[str, Any] | None, options: dict) -> dict:
        """The declared noise: injected (checked in ``__call__``) or drawn uniform [0, 1).

        Float64 for float64 inputs, float32 otherwise, as in the PyTorch backend (a
        bfloat16 uniform, under a mixed-precision policy, is too coarse for a route draw).
        """
        declared = self.spec.noise(v.shape[0], training=training, **options)
        dtype = "float64" if keras.backend.standardize_dtype(v.dtype) == "float64" else "float32"
        if noise is None:
            return {
                n.name: keras.random.uniform(n.shape, dtype=dtype, seed=self.seed_generator)
                for n in declared
            }
        return {n.name: ops.cast(noise[n.name], dtype) for n in declared}


# --- monitoring (routing rules) -----------------------------------------------------------


class RouteMonitor:
    """Training averages of the routing rules' aux outputs, for ``MonitorCallback``.

    A layer built with ``monitor=True`` holds two non-trainable variables (not
    canonical parameters: weight files never see them): ``monitor_sums``, the sums
    over training calls of each value of ``monitored`` (the share of the batch on
    each route; for ``energy_aware_adaptive`` also the batch's mean expected energy
    and its energy loss), and ``monitor_count``, the number of calls. Variables
    rather than Keras metrics: a metric updated inside a layer's call is dropped by
    Keras's JAX trainer (its stateless call carries the model's variables, not the
    metrics'), a variable is carried on every backend. Eval calls do not count.
    """

    monitored: ClassVar[tuple[str, ...]] = ("route_image", "route_text", "route_both")

    def _init_monitor(self, monitor: bool) -> None:
        if not isinstance(monitor, bool):
            raise InputError(
                f"{self.kind}: argument 'monitor' expected True or False; "
                f"received {describe(monitor)}"
            )
        self.monitor = monitor
        self.monitor_sums = None
        self.monitor_count = None

    def _build_monitor(self) -> None:
        if self.monitor and self.monitor_sums is None:
            self.monitor_sums = self.add_weight(
                name="monitor_sums", shape=(len(self.monitored),), initializer="zeros",
                trainable=False, dtype="float32",
            )
            self.monitor_count = self.add_weight(
                name="monitor_count", shape=(), initializer="zeros", trainable=False,
                dtype="float32",
            )

    def _update_monitor(self, aux: dict, training: bool) -> None:
        if not (training and self.monitor_sums is not None):
            return
        route = aux["route"]  # (B,) int32; -1: a sample with neither modality (no route)
        on = ops.cast(ops.expand_dims(route, -1) == ops.arange(3, dtype=route.dtype), "float32")
        values = [ops.mean(on, axis=0)]  # (3,)
        if "expected_energy" in aux:
            values.append(ops.reshape(ops.mean(ops.cast(aux["expected_energy"], "float32")), (1,)))
            values.append(ops.reshape(ops.cast(aux["energy_loss"], "float32"), (1,)))
        self.monitor_sums.assign_add(ops.stop_gradient(ops.concatenate(values, axis=0)))
        self.monitor_count.assign_add(1.0)

    def monitor_values(self) -> dict[str, float]:
        """``{name: mean over the training calls since the last reset}``; empty before one."""
        if self.monitor_sums is None:
            return {}
        n = float(ops.convert_to_numpy(self.monitor_count.value))
        if n == 0:
            return {}
        sums = ops.convert_to_numpy(self.monitor_sums.value)
        return {name: float(sums[i]) / n for i, name in enumerate(self.monitored)}

    def reset_monitor(self) -> None:
        if self.monitor_sums is not None:
            self.monitor_sums.assign(np.zeros(len(self.monitored), "float32"))
            self.monitor_count.assign(0.0)


def layers_holding(model, attribute: str, missing: str) -> list:
    """The layers of ``model`` (nested too) whose ``attribute`` is set; an
    ``InputError`` saying ``missing`` when there is none (a callback without work)."""
    found = [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if getattr(layer, attribute, None) is not None
    ]
    if not found:
        raise InputError(missing)
    return found


class MonitorCallback(keras.callbacks.Callback):
    """Writes the route shares (and for ``energy_aware_adaptive`` the expected energy
    and the energy loss) of every layer built with ``monitor=True``, averaged over the
    epoch's training batches, into the epoch's logs: ``history.history`` gets
    ``<layer name>_route_image``, ``_route_text``, ``_route_both``,
    ``_expected_energy``, ``_energy_loss``.

    ``fit(..., callbacks=[MonitorCallback()])``; an error when the model has no
    monitored layer.
    """

    def __init__(self):
        super().__init__()
        self._layers = []

    def on_train_begin(self, logs=None):
        self._layers = layers_holding(
            self.model, "monitor_sums",
            "MonitorCallback: expected a shomr or energy_aware_adaptive layer built with "
            "monitor=True in the model; received a model with none",
        )

    def on_epoch_begin(self, epoch, logs=None):
        for layer in self._layers:
            layer.reset_monitor()

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        for layer in self._layers:
            for name, value in layer.monitor_values().items():
                logs[f"{layer.name}_{name}"] = value
