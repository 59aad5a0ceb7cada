"""Training in real PyTorch setups: DistributedDataParallel, autocast, devices, builders."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch_cases import BATCH, inputs, perturbed_params

from fusion_spec import spec
from fusion_spec.backends import torch as bt

#: One small spec per rule, defaults otherwise; dropout 0 (element-wise dropout draws from
#: the global generator, which two processes cannot share) and, for the energy loss, a
#: budget of 0, which keeps relu(mean - budget) linear in the batch mean: the loss of the
#: full batch is then the mean of the two halves' losses.
#: input_norm="none": with the default "batch" each replica normalises with its own
#: half's statistics, so DDP gradients differ from one process's (the distributed guide)
DDP_SPECS = {
    "simple": dict(dim=8, heads=2, layers=2, dropout=0.0),
    "concat_mlp": dict(dim=8, dropout=0.0),
    "gated": dict(dim=8),
    "film": dict(dim=8),
    "modality_dropout": dict(dim=8),
    "transformer_concat": dict(dim=8, heads=2, layers=2, dropout=0.0),
    "cross_attention": dict(dim=8, heads=2, dropout=0.0),
    "shomr": dict(dim=8, heads=2, dropout=0.0),
    "energy_aware_adaptive": dict(dim=8, heads=2, dropout=0.0, energy_budget_mJ=0.0),
}
DDP_BATCH, DDP_STEPS, WORLD = 8, 2, 2
#: float64 throughout: DDP and one process then differ only in the order of the
#: gradient sums (the mean over two halves averaged vs the mean over the batch).
DDP_TOL = dict(rtol=1e-9, atol=1e-12)


def _loss(module, v, t, noise):
    fused, aux = module(v, t, noise=noise, return_aux=True)
    loss = (fused**2).mean() + fused.mean()
    if "energy_loss" in aux:
        loss = loss + aux["energy_loss"]
    return loss


def _data(kind):
    """Per step: inputs ``(B, D)`` and the call's noise for the whole batch."""
    s = spec.parse(kind, input_norm="none", **DDP_SPECS[kind])
    rng = np.random.default_rng(7)
    steps = []
    for _ in range(DDP_STEPS):
        v, t = (torch.from_numpy(rng.normal(size=(DDP_BATCH, s.dim))) for _ in range(2))
        noise = {
            n.name: torch.from_numpy(rng.random(n.shape))
            for n in s.noise(DDP_BATCH, training=True)
        }
        steps.append((v, t, noise))
    return s, steps


def _half(x, rank):
    """Rank's half of a per-sample array; batch-level noise (shape (1,)) is shared."""
    if x.shape[0] != DDP_BATCH:
        return x
    size = DDP_BATCH // WORLD
    return x[rank * size : (rank + 1) * size]


def _train(module, steps, rank=None):
    """SGD on ``steps``; the gradients of each step (canonical names, float64)."""
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    inner = module.module if isinstance(module, torch.nn.parallel.DistributedDataParallel) else module
    grads = []
    for v, t, noise in steps:
        if rank is not None:
            v, t = _half(v, rank), _half(t, rank)
            noise = {k: _half(u, rank) for k, u in noise.items()}
        opt.zero_grad()
        _loss(module, v, t, noise).backward()
        grads.append({n: p.grad.clone() for n, p in inner.named_parameters()})
        opt.step()
    return grads


def _ddp_worker(rank, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        results = {}
        for kind in DDP_SPECS:
            s, steps = _data(kind)
            module = bt.build(s, perturbed_params(s)).double().train()
            # default specs give every parameter a gradient: no find_unused_parameters
            ddp = torch.nn.parallel.DistributedDataParallel(module)
            for i, g in enumerate(_train(ddp, steps, rank)):
                results.update({f"{kind}/{i}/{n}": x for n, x in g.items()})
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ddp_gradients_equal_single_process_gradients(tmp_path):
    """Two CPU processes (gloo), each half the batch, a few SGD steps per rule: the
    all-reduced gradients of every step equal those of one process on the whole batch."""
    mp.spawn(_ddp_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    for kind in DDP_SPECS:
        s, steps = _data(kind)
        module = bt.build(s, perturbed_params(s)).double().train()
        for i, grads in enumerate(_train(module, steps)):
            for name, expected in grads.items():
                for rank in ranks:
                    torch.testing.assert_close(
                        rank[f"{kind}/{i}/{name}"], expected, **DDP_TOL,
                        msg=lambda m, k=kind, i=i, n=name: f"{k} step {i} {n}: {m}",
                    )


def test_original_router_needs_find_unused_parameters():
    """With the original's no-gradient router, the router parameters get no gradient:
    under DDP that needs ``find_unused_parameters=True`` (the guide says so)."""
    for kind in ("shomr", "energy_aware_adaptive"):
        s = spec.parse(kind, dim=8, heads=2, straight_through=False)
        module = bt.build(s).train()
        v, t = torch.randn(4, 8), torch.randn(4, 8)
        module(v, t).sum().backward()
        silent = {n for n, p in module.named_parameters() if p.grad is None}
        assert silent == s.no_output_gradient() and any(n.startswith("router.") for n in silent)
        default = bt.build(kind, dim=8, heads=2).train()
        default(v, t).sum().backward()
        assert all(p.grad is not None for p in default.parameters())


# --- autocast ------------------------------------------------------------------------------


def _autocast_devices():
    devices = [("cpu", torch.bfloat16)]
    if torch.cuda.is_available():
        devices += [("cuda", torch.bfloat16), ("cuda", torch.float16)]
    return devices


@pytest.mark.parametrize("input_norm", ["none", "batch"])
@pytest.mark.parametrize(("device", "dtype"), _autocast_devices())
@pytest.mark.parametrize("kind", list(spec.RULES))
def test_autocast_output_dtype_is_the_parameters_dtype(kind, device, dtype, input_norm):
    """Every rule runs under autocast, forward and backward, and returns the fused output
    and its float aux in float32 (the parameters' dtype), the route as int32. With
    ``input_norm="batch"`` the statistics and running buffers stay float32."""
    s = spec.parse(kind, **{**DDP_SPECS[kind], "dim": 16, "input_norm": input_norm})
    module = bt.build(s).to(device)
    v, t = (torch.from_numpy(x).to(device) for x in inputs(s, batch=BATCH))
    reference, reference_aux = module.eval()(v, t, return_aux=True)
    for training in (False, True):
        module.train(training)
        with torch.autocast(device, dtype=dtype):
            fused, aux = module(v, t, return_aux=True)
        assert fused.dtype == torch.float32, (kind, training, fused.dtype)
        for name, value in aux.items():
            expected = torch.int32 if name == "route" else torch.float32
            assert value.dtype == expected, (kind, name, value.dtype)
        fused.float().square().mean().backward()
        assert all(
            p.grad is None or torch.isfinite(p.grad).all() for p in module.parameters()
        )
        if not training:  # bfloat16 keeps 8 bits of mantissa: relative error ~ 2^-8 per op
            # a routing decision near its threshold may flip in bfloat16 (a different path,
            # not a rounding error): compare the samples whose decisions agree
            same = torch.ones(fused.shape[0], dtype=torch.bool, device=fused.device)
            for name in ("route", "hard", "fallback"):
                if name in aux:
                    same &= aux[name] == reference_aux[name]
            assert same.any(), (kind, "every decision flipped under autocast")
            torch.testing.assert_close(fused[same], reference[same], rtol=0.1, atol=0.1)


# --- devices, builders, checkpoints -----------------------------------------------------------


@pytest.mark.parametrize("kind", ["shomr", "energy_aware_adaptive", "modality_dropout"])
def test_module_built_with_a_generator_moves_to_another_device(kind):
    """The CPU generator seeds a generator of the new device; ``meta`` has none."""
    s = spec.parse(kind, input_norm="none", **DDP_SPECS[kind])
    module = bt.build(s, generator=torch.Generator().manual_seed(0)).train()
    meta = module.to("meta")
    out = meta(torch.empty(4, s.dim, device="meta"), torch.empty(4, s.dim, device="meta"))
    assert out.device.type == "meta" and out.shape == (4, s.dim)
    if torch.cuda.is_available():
        gpu = bt.build(s, generator=torch.Generator().manual_seed(0)).train().to("cuda")
        first = gpu(torch.randn(4, s.dim, device="cuda"), torch.randn(4, s.dim, device="cuda"))
        assert first.device.type == "cuda"


def test_generator_on_another_device_is_seeded_from_the_module_generator():
    """Two modules built with equal generators draw equal noise after the move."""
    if not torch.cuda.is_available():
        pytest.skip("needs a second real device (a GPU); meta is covered above")
    draws = []
    for _ in range(2):
        s = spec.parse("shomr", dim=8, heads=2)
        module = bt.build(s, generator=torch.Generator().manual_seed(3)).train().to("cuda")
        v = torch.ones(16, 8, device="cuda")
        draws.append(module(v, v, return_aux=True)[1]["route"].cpu())
    torch.testing.assert_close(draws[0], draws[1])


def test_build_takes_kind_and_fields():
    module = bt.build("gated", dim=64)
    assert module.spec == spec.parse("gated", dim=64)
    params = spec.init_params(spec.parse("gated", dim=4), seed=0)
    loaded = bt.build("gated", params, dim=4)
    np.testing.assert_array_equal(loaded.canonical_params()["gate.weight"], params["gate.weight"])
    with pytest.raises(spec.SpecError, match="gated: field 'dim' is required and was not given"):
        bt.build("gated")


def test_legacy_checkpoint_of_a_ddp_model_loads(tmp_path):
    """``module.``-prefixed keys (a state_dict saved from DDP/DataParallel) load the same weights."""
    s = spec.parse("gated", dim=4, input_norm="none")  # from_legacy: the original's function
    legacy = {"gate.0.weight": torch.randn(4, 8), "gate.0.bias": torch.randn(4)}
    plain = bt.load_legacy_checkpoint(legacy, "gated")
    for state in (
        {f"module.{k}": v for k, v in legacy.items()},
        {f"module.fusion.{k}": v for k, v in legacy.items()},
    ):
        torch.save({"state_dict": state}, tmp_path / "ddp.pt")
        loaded = bt.load_legacy_checkpoint(tmp_path / "ddp.pt", "gated")
        assert loaded.spec == s
        for name, value in plain.canonical_params().items():
            np.testing.assert_array_equal(loaded.canonical_params()[name], value)
