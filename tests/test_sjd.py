"""Speculative Jacobi decoding (``ar/sjd.py``): exact distribution, cache mechanics, per-sample RNG.

Exactness is checked, not assumed: on a micro GPT (3 tokens, 4 positions, 2 classes, CFG on) the
probability of every whole sequence under the standard sampler's conditionals is enumerated, and
many SJD draws at a fixed seed must match it by a chi-square test (so the test is deterministic).
"""

from __future__ import annotations

import itertools

import pytest
import torch
from scipy.stats import chisquare

from gigatok_core.ar import CFGSchedule, Drawer, SamplingParams, build_gpt, generate, sample_generators
from gigatok_core.ar.load import seeded_random_weights
from gigatok_core.ar.sjd import SJDStats, conditionals, generate_sjd, guidance_tables
from gigatok_core.config import GPTConfig
from gigatok_core.errors import GigatokError

pytestmark = pytest.mark.usefixtures("one_thread")

V, N, DRAWS = 3, 4, 12000
CLASSES = torch.tensor([0, 1]).repeat(DRAWS // 2)  # (DRAWS,) alternating classes


@pytest.fixture(scope="module")
def micro():
    cfg = GPTConfig(
        size="gpt-b", dim=16, n_layer=1, n_head=2, vocab_size=V, block_size=N, num_classes=2, multiple_of=16
    )
    model = build_gpt(cfg).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # larger weights than the initializer's, so conditionals differ clearly
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (0.35 if p.ndim >= 2 else 0.2) + (p.ndim == 1))
    return model


@pytest.fixture(scope="module")
def tiny():
    cfg = GPTConfig(size="gpt-b", dim=32, n_layer=2, n_head=2, vocab_size=64, block_size=16, num_classes=10)
    return seeded_random_weights(build_gpt(cfg), seed=1).eval()


def exact_distribution(model, cfg: CFGSchedule, sampling: SamplingParams) -> torch.Tensor:
    """(2, V**N) float64: P(sequence | class) under the standard sampler, by enumeration.

    Each conditional comes from one full causal forward (no cache) over [class, prefix], guided at
    that token's schedule value, then temperature, top-k, top-p, softmax (``ar/generate.py``).
    """
    seqs = torch.tensor(list(itertools.product(range(V), repeat=N)))  # (S, N), lexicographic
    out = []
    for c in (0, 1):
        labels = torch.full((len(seqs),), c)
        rows = torch.cat([labels, torch.full_like(labels, model.null_class)]) if cfg.enabled else labels
        inputs = torch.cat([seqs[:, :-1]] * (2 if cfg.enabled else 1))
        with torch.no_grad():
            logits = model(rows, inputs)  # (R, N, V): row j predicts token j
        token_idx = torch.arange(N).expand(len(seqs), N)
        p = conditionals(logits, token_idx, cfg, guidance_tables(cfg, N, torch.device("cpu")), sampling)
        out.append(p.double().gather(2, seqs[..., None])[..., 0].prod(dim=1))
    return torch.stack(out)


def chi_square_pvalue(tokens: torch.Tensor, labels: torch.Tensor, exact: torch.Tensor) -> float:
    """p-value of the draws against ``exact`` (cells with expected count < 5 pooled into one);
    asserts that no sequence of probability zero was drawn."""
    index = labels * V**N + (tokens * V ** torch.arange(N - 1, -1, -1)).sum(dim=1)
    counts = torch.bincount(index, minlength=2 * V**N).double()
    expected = (exact / 2 * len(tokens)).flatten()  # classes are balanced
    assert counts[expected == 0].sum() == 0, "drew a sequence the standard sampler never produces"
    big = expected >= 5
    obs = torch.cat([counts[big], counts[~big].sum()[None]])
    exp = torch.cat([expected[big], expected[~big].sum()[None]])
    keep = exp > 0
    assert int(big.sum()) >= 10  # the test has cells to compare
    return float(chisquare(obs[keep], exp[keep] * obs[keep].sum() / exp[keep].sum()).pvalue)


def sjd_draws(model, cfg, sampling, window: int, stats: SJDStats | None = None) -> torch.Tensor:
    gens = sample_generators(123, CLASSES.tolist(), range(DRAWS))
    return generate_sjd(model, CLASSES, gens, cfg=cfg, sampling=sampling, window=window, stats=stats)


# ---------------------------------------------------------------------------------------------
# Exactness
# ---------------------------------------------------------------------------------------------
SETTINGS = {
    "cfg-constant": (CFGSchedule(3.0), SamplingParams()),
    "linear-topk": (CFGSchedule(2.5, "linear"), SamplingParams(top_k=2)),
    "step-interval-topp-temp": (
        CFGSchedule(3.0, "step", window_start=0.5, interval=1),
        SamplingParams(top_p=0.85, temperature=0.8),
    ),
    "no-cfg-topk-topp": (CFGSchedule(1.0), SamplingParams(top_k=2, top_p=0.9)),
}


def test_enumeration_matches_the_standard_sampler(micro) -> None:
    """The reference itself: the standard sampler's draws fit the enumerated distribution."""
    cfg, sampling = SETTINGS["cfg-constant"]
    drawer = Drawer("per-sample", generators=sample_generators(123, CLASSES.tolist(), range(DRAWS)))
    tokens = generate(micro, CLASSES, drawer, cfg=cfg, sampling=sampling)
    assert chi_square_pvalue(tokens, CLASSES, exact_distribution(micro, cfg, sampling)) > 1e-3


CASES = [("cfg-constant", 1), ("cfg-constant", 2), ("cfg-constant", 4)] + [(k, 3) for k in list(SETTINGS)[1:]]


@pytest.mark.parametrize(("name", "window"), CASES)
def test_sjd_is_exact(micro, name: str, window: int) -> None:
    """Windows 1, 2 and 4 (= every token) and 3 (slides, with bonus tokens) over 4 positions."""
    cfg, sampling = SETTINGS[name]
    stats = SJDStats()
    tokens = sjd_draws(micro, cfg, sampling, window, stats)
    assert chi_square_pvalue(tokens, CLASSES, exact_distribution(micro, cfg, sampling)) > 1e-3
    # the run exercised both branches: accepted drafts and rejections
    assert 0.1 < stats.acceptance < 0.95 and stats.drafts_accepted > DRAWS // 4
    if window > 1:
        assert stats.mean_row_passes < N  # fewer passes than tokens on average


def test_the_chi_square_test_has_power(micro) -> None:
    """A sampler off by a little (CFG 2.6 instead of 3) fails the same test."""
    cfg, sampling = SETTINGS["cfg-constant"]
    tokens = sjd_draws(micro, CFGSchedule(2.6), sampling, window=2)
    assert chi_square_pvalue(tokens, CLASSES, exact_distribution(micro, cfg, sampling)) < 1e-6


# ---------------------------------------------------------------------------------------------
# Cache mechanics, per-sample randomness, options
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("window", [1, 3, 16])
def test_greedy_sjd_equals_greedy_generate(tiny, window: int) -> None:
    """With top-k 1 both samplers are deterministic: any error in the per-row positions, the cache
    writes or the guidance per position would change tokens (16 positions, 3 rows)."""
    labels = torch.tensor([1, 5, 9])
    cfg, sampling = CFGSchedule(2.0, "linear"), SamplingParams(top_k=1)
    ref = generate(tiny, labels, Drawer("official"), cfg=cfg, sampling=sampling)
    stats = SJDStats()
    gens = sample_generators(0, labels.tolist(), [0, 0, 0])
    got = generate_sjd(tiny, labels, gens, cfg=cfg, sampling=sampling, window=window, stats=stats)
    assert torch.equal(got, ref)
    assert stats.passes <= 16 and stats.num_tokens == 16


def test_an_image_does_not_depend_on_its_batch_mates(tiny) -> None:
    cls, idx = [3, 3, 7, 2], [0, 1, 0, 5]
    cfg, sampling = CFGSchedule(4.0, "cosine"), SamplingParams(top_p=0.95)

    def run(c: list[int], k: list[int]) -> torch.Tensor:
        gens = sample_generators(7, c, k)
        return generate_sjd(tiny, torch.tensor(c), gens, cfg=cfg, sampling=sampling, window=4)

    together = run(cls, idx)
    for i, (c, k) in enumerate(zip(cls, idx, strict=True)):
        assert torch.equal(run([c], [k])[0], together[i])
    assert torch.equal(run(cls[::-1], idx[::-1]), together.flip(0))
    assert not torch.equal(together[0], together[1])  # different seeds, different images


def test_bad_window_is_a_clear_error(tiny) -> None:
    with pytest.raises(GigatokError, match="window must be at least 1"):
        generate_sjd(tiny, torch.tensor([1]), sample_generators(0, [1], [0]), window=0)


@pytest.mark.slow  # one torch.compile of the window pass: ~45 s on a busy 2-core CPU
def test_compiled_window_pass_equals_eager(tiny) -> None:
    """``compile=True`` compiles ``GPT.forward_rows`` once (fixed shapes per window length) and draws
    the same tokens as the eager pass at the same seeds."""
    labels = torch.tensor([1, 5, 9])
    kw = dict(cfg=CFGSchedule(2.0), sampling=SamplingParams(top_k=10), window=4)
    eager = generate_sjd(tiny, labels, sample_generators(0, [1, 5, 9], [0, 1, 2]), **kw)
    torch._dynamo.reset()
    compiled = generate_sjd(tiny, labels, sample_generators(0, [1, 5, 9], [0, 1, 2]), compile=True, **kw)
    again = generate_sjd(tiny, labels, sample_generators(0, [1, 5, 9], [0, 1, 2]), compile=True, **kw)
    assert torch.equal(compiled, eager) and torch.equal(again, eager)
