"""An eval call without autograd runs the attention rules over chunks of the batch (for
memory at large B: benchmarks/memory_bench.py); the results are the whole call's."""

from __future__ import annotations

import pytest
import torch

from fusion_spec.backends import torch as bt

CHUNKED = {"simple", "transformer_concat", "cross_attention"}
FIELDS = {"dim": 8, "heads": 2}


def test_exactly_the_attention_rules_chunk():
    assert {kind for kind, cls in bt.MODULES.items() if cls.chunked_eval} == CHUNKED


def _counting(module):
    """``module`` whose ``fuse`` counts its calls in ``module.fuse_calls``."""
    fuse, module.fuse_calls = module.fuse, 0

    def counted(*args, **kwargs):
        module.fuse_calls += 1
        return fuse(*args, **kwargs)

    module.fuse = counted
    return module


@pytest.mark.parametrize("kind", sorted(CHUNKED))
@pytest.mark.parametrize("missing", ["zero_fill", "key_mask"])
def test_a_chunked_call_equals_the_whole_call(kind, missing):
    torch.manual_seed(0)
    module = _counting(bt.build(kind, missing_modality=missing, **FIELDS).eval())
    v, t = torch.randn(37, 8), torch.randn(37, 8)
    present = torch.rand(37, 2) > 0.3
    with torch.inference_mode():
        module.eval_chunk_elements = 0
        whole, whole_aux = module(v, t, present, return_aux=True)
        assert module.fuse_calls == 1
        module.eval_chunk_elements = 10 * 8  # 10 rows: chunks of 10, 10, 10, 7
        chunked, chunked_aux = module(v, t, present, return_aux=True)
        assert module.fuse_calls == 1 + 4
    torch.testing.assert_close(chunked, whole, rtol=1e-6, atol=1e-6)
    assert set(chunked_aux) == set(whole_aux)
    for name, a in whole_aux.items():
        torch.testing.assert_close(chunked_aux[name], a, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", sorted(CHUNKED))
def test_training_and_autograd_calls_run_whole(kind):
    module = _counting(bt.build(kind, dropout=0.0, **FIELDS))
    module.eval_chunk_elements = 8  # one row per chunk, were it chunked
    v, t = torch.randn(5, 8), torch.randn(5, 8)
    module(v, t).sum().backward()  # training
    module.eval()
    module(v, t).sum().backward()  # eval, autograd on: chunks would keep every intermediate
    assert module.fuse_calls == 2
    with torch.no_grad():
        module(v, t)
    assert module.fuse_calls == 2 + 5
    with torch.no_grad():
        module(v[:1], t[:1])  # a batch of one chunk: one piece
    assert module.fuse_calls == 2 + 5 + 1
