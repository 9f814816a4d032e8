"""GPT architecture, KV cache, sampling primitives and loading (tiny configs; real presets on meta)."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from conftest import fixture_path

from gigatok_core.ar import (
    CFGSchedule,
    Drawer,
    SamplingParams,
    build_gpt,
    filter_logits,
    generate,
    load_gpt,
    sample_generators,
)
from gigatok_core.ar.load import seeded_random_weights
from gigatok_core.config import GPTConfig
from gigatok_core.errors import GigatokError
from gigatok_core.registry import gpt_names, gpt_preset

FIXTURE_NAMES = {"gpt-b": "GPT-B", "gpt-l": "GPT-L", "gpt-xl": "GPT-XL", "gpt-xxl": "GPT-XXL"}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny():
    cfg = GPTConfig(size="gpt-b", dim=32, n_layer=2, n_head=2, vocab_size=64, block_size=16, num_classes=10)
    return seeded_random_weights(build_gpt(cfg), seed=1).eval()


# ---------------------------------------------------------------------------------------------
# Architecture
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(FIXTURE_NAMES))
def test_state_dict_matches_official_keys(name: str) -> None:
    ref = json.loads(fixture_path("gpt_state_dict_keys.json").read_text())[FIXTURE_NAMES[name]]
    model = build_gpt(gpt_preset(name).config, device="meta")
    got = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in model.state_dict().items()]
    assert got == ref["state_dict"]
    assert model.num_params() == ref["num_params"]
    assert model.config.ffn_hidden == ref["config"]["ffn_hidden"]


@pytest.mark.parametrize("name", gpt_names())
def test_every_preset_builds_on_meta(name: str) -> None:
    preset = gpt_preset(name)
    model = build_gpt(preset.config, device="meta")
    assert len(model.state_dict()) == 3 + 7 * preset.config.n_layer + 2
    if preset.params is not None:
        assert model.num_params() == preset.params


def test_null_class_row_and_no_cache_in_state_dict(tiny) -> None:
    assert tiny.cls_embedding.embedding_table.weight.shape[0] == 11
    keys = set(tiny.state_dict())
    generate(tiny, torch.tensor([1]), Drawer("official"), num_tokens=4)
    assert set(tiny.state_dict()) == keys  # the KV cache never becomes part of the model


def test_rmsnorm_runs_in_float32() -> None:
    from gigatok_core.ar.gpt import RMSNorm

    norm = RMSNorm(8)
    x = (torch.randn(2, 8) * 300).to(torch.bfloat16)
    ref = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-5)
    assert norm.to(torch.bfloat16)(x).dtype == torch.bfloat16
    torch.testing.assert_close(norm(x).float(), ref, atol=1e-2, rtol=1e-2)


# ---------------------------------------------------------------------------------------------
# KV cache
# ---------------------------------------------------------------------------------------------
def test_cached_chunks_equal_full_forward(tiny) -> None:
    labels, tokens = torch.tensor([3, 7]), torch.randint(0, 64, (2, 10))
    with torch.no_grad():
        full = tiny(labels, tokens)  # (2, 11, V)
        cache = tiny.new_cache(2)
        a = tiny(labels, tokens[:, :4], cache=cache, start=0)  # positions 0..4
        b = tiny(None, tokens[:, 4:7], cache=cache, start=5)  # positions 5..7
        c = tiny(None, tokens[:, 7:], cache=cache, start=8)  # positions 8..10
    torch.testing.assert_close(torch.cat([a, b, c], 1), full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("cfg", [CFGSchedule(3.0, "linear"), CFGSchedule(1.0)])
def test_kv_cache_generation_equals_recomputation(tiny, cfg: CFGSchedule) -> None:
    labels = torch.tensor([1, 5, 9])
    logs: dict[bool, list[torch.Tensor]] = {True: [], False: []}
    out = {}
    for use_cache in (True, False):
        drawer = Drawer("per-sample", generators=sample_generators(0, [1, 5, 9], [0, 0, 0]))
        out[use_cache] = generate(
            tiny,
            labels,
            drawer,
            cfg=cfg,
            use_cache=use_cache,
            on_step=lambda j, g, c, u=use_cache: logs[u].append(g.clone()),
        )
    assert torch.equal(out[True], out[False])
    torch.testing.assert_close(torch.stack(logs[True]), torch.stack(logs[False]), atol=1e-5, rtol=0)
    assert out[True].shape == (3, 16) and out[True].dtype == torch.long


def test_cfg_combination_and_interval(tiny) -> None:
    """guided = uncond + (cond - uncond) * s, and past cfg_interval the cond logits alone."""
    labels = torch.tensor([2])
    seen: list[torch.Tensor] = []
    toks = generate(
        tiny,
        labels,
        Drawer("official"),
        cfg=CFGSchedule(2.5, interval=3),
        on_step=lambda j, g, c: seen.append(g.clone()),
    )
    with torch.no_grad():
        cond = tiny(labels, toks[:, :-1])[0]
        uncond = tiny(torch.tensor([10]), toks[:, :-1])[0]
    expect = uncond + (cond - uncond) * 2.5
    got = torch.cat(seen)
    torch.testing.assert_close(got[:5], expect[:5], atol=1e-5, rtol=0)  # tokens 0..4 (steps <= 3)
    torch.testing.assert_close(got[5:], cond[5:], atol=1e-5, rtol=0)  # steps > 3 use cond only


# ---------------------------------------------------------------------------------------------
# Sampling primitives
# ---------------------------------------------------------------------------------------------
def test_top_k_keeps_ties_and_top_p_keeps_the_crossing_token() -> None:
    logits = torch.tensor([[3.0, 1.0, 3.0, 0.0, 1.0]])
    kept = filter_logits(logits, top_k=1).isfinite()
    assert kept.tolist() == [[True, False, True, False, False]]
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    kept = filter_logits(probs.log(), top_p=0.6).isfinite()
    assert kept.tolist() == [[True, True, False, False]]  # 0.5 < 0.6, 0.8 crosses: kept
    kept = filter_logits(probs.log(), top_p=0.1).isfinite()
    assert kept.tolist() == [[True, False, False, False]]  # the top token always stays
    assert filter_logits(logits).isfinite().all()


def test_per_sample_draws_follow_the_distribution() -> None:
    probs = torch.tensor([[0.5, 0.0, 0.3, 0.2]] * 2)
    drawer = Drawer("per-sample", generators=sample_generators(0, [1, 2], [0, 0]))
    draws = torch.stack([drawer(probs) for _ in range(4000)])  # (4000, 2)
    for row in range(2):
        freq = torch.bincount(draws[:, row], minlength=4).double() / 4000
        assert freq[1] == 0  # a zero-probability token is never drawn
        torch.testing.assert_close(freq, probs[row].double(), atol=0.03, rtol=0)
    assert not torch.equal(draws[:, 0], draws[:, 1])  # rows have their own streams


def test_batch_composition_does_not_change_samples(tiny) -> None:
    cls, idx = [4, 4, 8, 1], [0, 1, 0, 3]
    together = generate(
        tiny,
        torch.tensor(cls),
        Drawer("per-sample", generators=sample_generators(7, cls, idx)),
        cfg=CFGSchedule(2.0),
        sampling=SamplingParams(temperature=1.2, top_k=20, top_p=0.9),
    )
    alone = [
        generate(
            tiny,
            torch.tensor([c]),
            Drawer("per-sample", generators=sample_generators(7, [c], [k])),
            cfg=CFGSchedule(2.0),
            sampling=SamplingParams(temperature=1.2, top_k=20, top_p=0.9),
        )
        for c, k in zip(cls, idx, strict=True)
    ]
    assert torch.equal(together, torch.cat(alone))
    assert not torch.equal(together[0], together[1])  # different index, different sample


def test_zero_temperature_is_greedy(tiny) -> None:
    labels = torch.tensor([0, 6])
    greedy = generate(tiny, labels, Drawer("official", seed=1), sampling=SamplingParams(top_k=1))
    cold = generate(tiny, labels, Drawer("official", seed=2), sampling=SamplingParams(temperature=0.0))
    assert torch.equal(greedy, cold)


def test_official_mode_is_seeded() -> None:
    probs = torch.softmax(torch.randn(2, 50), -1)
    a = Drawer("official", seed=3)(probs)
    torch.manual_seed(3)
    assert torch.equal(a, torch.multinomial(probs, 1)[:, 0])


def test_bad_settings_are_user_errors(tiny) -> None:
    with pytest.raises(GigatokError, match="top-p"):
        SamplingParams(top_p=0.0)
    with pytest.raises(GigatokError, match="schedule"):
        CFGSchedule(2.0, "exponential")
    with pytest.raises(GigatokError, match="class labels"):
        generate(tiny, torch.tensor([10]), Drawer("official"))


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------
def _official_file(path, model, *, prefix: str = "") -> None:
    sd = {prefix + k: v for k, v in model.state_dict().items()}
    ema = {k: torch.zeros_like(v) for k, v in sd.items()}
    torch.save(
        {
            "model": sd,
            "ema": ema,
            "optimizer": {"state": {}},
            "steps": 5,
            "args": argparse.Namespace(gpt_model="GPT-B"),
        },
        path,
    )


@pytest.mark.parametrize("prefix", ["", "module._orig_mod."])
def test_load_official_format_prefers_model_over_ema(tmp_path, prefix: str) -> None:
    src, _ = load_gpt("gpt-tiny")
    with torch.no_grad():
        src.output.weight.mul_(3.0)
    path = tmp_path / "ckpt.pt"
    _official_file(path, src, prefix=prefix)
    model, tok = load_gpt("gpt-tiny", checkpoint=path)
    assert tok == "tiny"
    for k, v in src.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    assert not model.training


def test_random_tiny_weights_are_deterministic() -> None:
    a, _ = load_gpt("gpt-tiny")
    b, _ = load_gpt("gpt-tiny")
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    assert a.output.weight.abs().sum() > 0


def test_pairing_refusals(tmp_path) -> None:
    with pytest.raises(GigatokError, match="no gpt-l checkpoint was released"):
        load_gpt("gpt-l", tokenizer="xl-xxl")
    with pytest.raises(GigatokError, match="codebook"):
        load_gpt("gpt-tiny", tokenizer="s-s")
    with pytest.raises(GigatokError, match="not in the cache"):
        load_gpt("gpt-b")  # paper pairing xl-xxl, released, but not downloaded


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"vocab_size": 512}, "vocabulary of 512"),
        ({"vocab_size": 1024, "block_size": 128}, "generates 128 tokens per image"),
    ],
)
def test_checkpoint_that_does_not_fit_the_tokenizer_is_refused(
    tmp_path, overrides: dict, message: str
) -> None:
    cfg = GPTConfig(size="gpt-b", dim=64, n_layer=2, n_head=2, **overrides)
    path = tmp_path / "other.pt"
    _official_file(path, build_gpt(cfg))
    with pytest.raises(GigatokError, match=message):
        load_gpt("gpt-tiny", checkpoint=path)
