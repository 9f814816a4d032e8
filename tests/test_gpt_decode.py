"""Static-shape decode step and its compiled form (gpt-tiny on CPU; one compilation per run)."""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

from gigatok_core.ar import CFGSchedule, Drawer, SamplingParams, build_gpt, generate, sample_generators
from gigatok_core.ar.decode import (
    _STATIC_CACHES,
    DecodeStep,
    bucket_length,
    length_buckets,
    release_static_cache,
)
from gigatok_core.ar.gpt import Attention
from gigatok_core.ar.load import seeded_random_weights
from gigatok_core.errors import GigatokError
from gigatok_core.registry import gpt_preset

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = [1, 500, 999]
LABELS = torch.tensor(CLASSES)
CFG = CFGSchedule(4.0)


@pytest.fixture(scope="module")
def tiny():
    return seeded_random_weights(build_gpt(gpt_preset("gpt-tiny").config), seed=3).eval()


def _drawer(seed: int = 0) -> Drawer:
    return Drawer("per-sample", generators=sample_generators(seed, CLASSES, [0, 1, 2]))


# ---------------------------------------------------------------------------------------------
# Eager static step
# ---------------------------------------------------------------------------------------------
def test_static_step_equals_sliced_cache_path(tiny) -> None:
    """decode_step (masked full cache, tensor position) == forward(start=j) (sliced cache)."""
    rows, n = 4, 40
    labels, tokens = torch.tensor([3, 7, 1000, 1000]), torch.randint(0, 1024, (rows, n))
    with torch.inference_mode():
        c_ref, c_new = tiny.new_cache(rows, n + 1), tiny.new_cache(rows, n + 1)
        tiny(labels, None, cache=c_ref, start=0)
        tiny(labels, None, cache=c_new, start=0)
        pos = torch.zeros(1, dtype=torch.long)
        for j in range(1, n + 1):
            ref = tiny(None, tokens[:, j - 1 : j], cache=c_ref, start=j, last_only=True)[:, -1]
            got = tiny.decode_step(tokens[:, j - 1 : j], pos.fill_(j), c_new)
            assert got.shape == (rows, 1024) and got.dtype == torch.float32
            torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)
        for a, b in zip(c_new.k + c_new.v, c_ref.k + c_ref.v, strict=True):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_length_buckets_cover_the_cache() -> None:
    assert length_buckets(256) == [64, 128, 192, 256]
    assert length_buckets(256, 1) == [256]
    assert length_buckets(8) == [8]  # a short cache: one bucket
    assert length_buckets(41, 2) == [32, 41]
    ends = length_buckets(256)
    assert [bucket_length(j, ends) for j in (1, 63, 64, 200, 255)] == [64, 64, 128, 256, 256]
    with pytest.raises(ValueError, match="outside"):
        bucket_length(256, ends)


def test_static_step_reading_a_length_bucket_equals_the_full_cache(tiny) -> None:
    """Reading only the first ``length`` slots (the filled part and some) changes nothing."""
    rows, n = 2, 40
    labels, tokens = torch.tensor([3, 1000]), torch.randint(0, 1024, (rows, n))
    ends = length_buckets(n + 1, 3)
    with torch.inference_mode():
        c_full, c_part = tiny.new_cache(rows, n + 1), tiny.new_cache(rows, n + 1)
        tiny(labels, None, cache=c_full, start=0)
        tiny(labels, None, cache=c_part, start=0)
        pos = torch.zeros(1, dtype=torch.long)
        for j in range(1, n + 1):
            full = tiny.decode_step(tokens[:, j - 1 : j], pos.fill_(j), c_full)
            part = tiny.decode_step(tokens[:, j - 1 : j], pos.fill_(j), c_part, bucket_length(j, ends))
            torch.testing.assert_close(part, full, atol=1e-5, rtol=0)


def test_static_attention_masks_unwritten_slots() -> None:
    """Several positions at once; garbage in slots past a query's position must not leak in."""
    cfg = gpt_preset("gpt-tiny").config
    attn = Attention(cfg).eval()
    b, length, h, d = 2, 12, cfg.n_head, cfg.head_dim
    x = torch.randn(b, 3, cfg.dim)
    with torch.no_grad():
        prefix = torch.randn(b, 5, cfg.dim)
        caches = [(torch.zeros(b, h, length, d), torch.zeros(b, h, length, d)) for _ in range(2)]
        for k, v in caches:
            attn(prefix, (k, v), 0)  # slots 0..4
        caches[1][0][:, :, 8:] = 1e4  # stale junk in slots the queries must not see
        caches[1][1][:, :, 8:] = -3e3  # (finite: 0 * nan would still be nan)
        ref = attn(x, caches[0], 5)  # sliced path, positions 5..7
        got = attn(x, caches[1], torch.tensor([5, 6, 7]))
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)


def test_compile_needs_the_cache(tiny) -> None:
    with pytest.raises(GigatokError, match="use_cache"):
        generate(tiny, LABELS, _drawer(), num_tokens=4, use_cache=False, compile=True)


# ---------------------------------------------------------------------------------------------
# Compiled step (the default run compiles once)
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compiled_greedy(tiny) -> dict:
    """One compiled greedy generation from a clean dynamo state, with the compile count (one
    graph per cache-length bucket)."""
    torch._dynamo.reset()
    counters.clear()
    release_static_cache(tiny)
    tokens = generate(tiny, LABELS, _drawer(), cfg=CFG, sampling=SamplingParams(top_k=1), compile=True)
    return {"tokens": tokens, "graphs": counters["stats"]["unique_graphs"]}


def test_compiled_greedy_equals_eager(tiny, compiled_greedy) -> None:
    eager = generate(tiny, LABELS, _drawer(), cfg=CFG, sampling=SamplingParams(top_k=1))
    # one graph per length bucket (64, 128, 192, 256 slots) for all 255 decode steps
    assert compiled_greedy["graphs"] == len(length_buckets(256))
    assert torch.equal(compiled_greedy["tokens"], eager)


def test_compiled_sampling_reuses_the_graph_and_equals_eager(tiny, compiled_greedy) -> None:
    sampling = SamplingParams(temperature=1.2, top_k=50)
    cache_ptr = _STATIC_CACHES[tiny].k[0].data_ptr()
    with torch._dynamo.config.patch(error_on_recompile=True):
        got = generate(tiny, LABELS, _drawer(seed=7), cfg=CFG, sampling=sampling, compile=True)
    assert counters["stats"]["unique_graphs"] == compiled_greedy["graphs"]  # nothing new compiled
    assert _STATIC_CACHES[tiny].k[0].data_ptr() == cache_ptr  # fixed-address cache reused
    eager = generate(tiny, LABELS, _drawer(seed=7), cfg=CFG, sampling=sampling)
    assert torch.equal(got, eager)
    assert len(set(got[0].tolist())) > 10  # really sampled, not a constant sequence


@pytest.mark.slow
def test_new_batch_size_recompiles_once_then_matches_eager(tiny, compiled_greedy) -> None:
    labels, sampling = torch.tensor([42, 7]), SamplingParams(top_k=1)
    drawer = lambda: Drawer("per-sample", generators=sample_generators(0, [42, 7], [0, 0]))  # noqa: E731
    before = counters["stats"]["unique_graphs"]
    got = generate(tiny, labels, drawer(), cfg=CFG, sampling=sampling, num_tokens=32, compile=True)
    assert counters["stats"]["unique_graphs"] == before + len(length_buckets(32))
    assert torch.equal(got, generate(tiny, labels, drawer(), cfg=CFG, sampling=sampling, num_tokens=32))


def test_eager_step_keeps_no_cache(tiny) -> None:
    release_static_cache(tiny)
    step = DecodeStep(tiny)
    with torch.inference_mode():
        a, b = step.new_cache(2, 8), step.new_cache(2, 8)
    assert a.k[0].data_ptr() != b.k[0].data_ptr() and tiny not in _STATIC_CACHES


def test_uniforms_reach_the_device_once_per_block() -> None:
    """The per-row uniforms are copied to the probabilities' device once per block of 256, not
    once per step (a host-to-device copy from pageable memory syncs the host)."""
    drawer = _drawer()
    probs = torch.full((3, 1024), 1 / 1024)
    copies = []
    real_to = torch.Tensor.to

    def counting_to(self, *args, **kwargs):
        copies.append(args)
        return real_to(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.Tensor, "to", counting_to)
        first = [drawer(probs) for _ in range(Drawer.BLOCK + 1)]
    assert len(copies) == 2  # blocks 1 and 2
    ref = _drawer()
    assert all(torch.equal(a, ref(probs)) for a in first)  # same stream as ever
