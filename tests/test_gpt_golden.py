"""GPT-B parity with the official code (fixture gpt_B_golden.pt, docs/fidelity.md#gpt).

The model is built once per module with the fixture's deterministic weight rule; three generations
of 256 tokens with CFG run on CPU in fp32 (a few seconds each on a quiet 2-core machine).
"""

from __future__ import annotations

import pytest
import torch
from conftest import fixture_path
from weightfill import entries_of, fill_state_dict

from gigatok_core.ar import CFGSchedule, Drawer, SamplingParams, build_gpt, generate
from gigatok_core.registry import gpt_preset

RUNS = {
    "greedy_cfg4_constant": (CFGSchedule(4.0, "constant"), SamplingParams(top_k=1)),
    "greedy_cfg1.75_step0.18": (CFGSchedule(1.75, "step", window_start=0.18), SamplingParams(top_k=1)),
    "sampled_cfg4_constant_seed0": (CFGSchedule(4.0, "constant"), SamplingParams()),
}
LABELS = torch.tensor([22, 388])


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def golden() -> dict:
    return torch.load(fixture_path("gpt_B_golden.pt"), weights_only=True)


@pytest.fixture(scope="module")
def model():
    m = build_gpt(gpt_preset("gpt-b").config, device="meta").to_empty(device="cpu")
    m.load_state_dict(fill_state_dict(entries_of(m), "gpt"), strict=True)
    return m.eval()


@pytest.fixture(scope="module")
def runs(model, golden) -> dict:
    """Each golden run regenerated once (official rng mode), with the guided logits recorded."""
    out = {}
    for name, (cfg, sampling) in RUNS.items():
        steps: dict[int, torch.Tensor] = {}
        top5 = torch.zeros(2, 256, 5)
        logprob = torch.zeros(2, 256)

        def hook(
            j: int, guided: torch.Tensor, chosen: torch.Tensor, steps=steps, top5=top5, logprob=logprob
        ) -> None:
            if j in (0, 1, 2, 255):
                steps[j] = guided.clone()
            top5[:, j] = guided.topk(5, dim=-1).values
            logprob[:, j] = guided.log_softmax(-1).gather(1, chosen[:, None])[:, 0]

        torch.manual_seed(123)  # the official mode must not depend on the global generator
        tokens = generate(model, LABELS, Drawer("official", seed=0), cfg=cfg, sampling=sampling, on_step=hook)
        out[name] = {
            "tokens": tokens,
            "steps": torch.stack([steps[j] for j in (0, 1, 2, 255)], 1),
            "top5": top5,
            "logprob": logprob,
        }
    return out


# ---------------------------------------------------------------------------------------------
# Teacher forcing
# ---------------------------------------------------------------------------------------------
def test_teacher_forced_logits(model, golden) -> None:
    tf = golden["teacher_forced"]
    with torch.no_grad():
        logits = model(tf["class_labels"], tf["prefix_tokens"])
        null = model(torch.full((2,), 1000), tf["prefix_tokens"])
    assert logits.shape == (2, 17, 16384) and logits.dtype == torch.float32
    torch.testing.assert_close(logits, tf["logits"], atol=1e-4, rtol=0)
    torch.testing.assert_close(null, tf["logits_null_class"], atol=1e-4, rtol=0)


def _teacher_forced_logprob(model, tokens: torch.Tensor, cfg_per_token: torch.Tensor) -> torch.Tensor:
    """chosen_logprob of recorded tokens from one cache-free forward of the cond and null rows."""
    with torch.no_grad():
        cond = model(LABELS, tokens[:, :-1])
        uncond = model(torch.full((2,), 1000), tokens[:, :-1])
    guided = uncond + (cond - uncond) * cfg_per_token.float()[None, :, None]
    return guided.log_softmax(-1).gather(2, tokens[:, :, None])[..., 0]


# ---------------------------------------------------------------------------------------------
# Generations
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(RUNS))
def test_cfg_per_token(name: str, golden) -> None:
    cfg, _ = RUNS[name]
    assert cfg.per_token(256) == pytest.approx(golden[name]["cfg_per_token"].tolist(), abs=1e-12)


@pytest.mark.parametrize("name", list(RUNS))
def test_generation_matches_official(name: str, model, golden, runs) -> None:
    ref, got = golden[name], runs[name]
    ref_tokens = ref["tokens"].long()
    mismatch = (got["tokens"] != ref_tokens).nonzero().tolist()
    ties = {tuple(t) for t in ref["near_tie_steps"].tolist()}
    greedy = name.startswith("greedy")
    if mismatch:
        row, step = mismatch[0]
        # Divergence is only acceptable at a listed near-tie step of a greedy run.
        assert greedy and (row, step) in ties, f"first divergence at row {row} step {step}; near ties {ties}"
        # Past the tie, compare the official tokens by teacher forcing.
        lp = _teacher_forced_logprob(model, ref_tokens, ref["cfg_per_token"])
        torch.testing.assert_close(lp, ref["chosen_logprob"], atol=5e-5, rtol=0)
        valid = torch.ones(2, 256, dtype=torch.bool)
        valid[row, step:] = False
    else:
        valid = torch.ones(2, 256, dtype=torch.bool)
    torch.testing.assert_close(got["steps"], ref["guided_logits_steps_0_1_2_255"], atol=1e-4, rtol=0)
    torch.testing.assert_close(got["top5"][valid], ref["guided_top5_values"][valid], atol=1e-4, rtol=0)
    torch.testing.assert_close(got["logprob"][valid], ref["chosen_logprob"][valid], atol=5e-5, rtol=0)


def test_teacher_forced_logprob_of_recorded_greedy_tokens(model, golden) -> None:
    ref = golden["greedy_cfg1.75_step0.18"]
    lp = _teacher_forced_logprob(model, ref["tokens"].long(), ref["cfg_per_token"])
    torch.testing.assert_close(lp, ref["chosen_logprob"], atol=5e-5, rtol=0)


def test_per_sample_rng_gives_same_greedy_tokens(model, golden) -> None:
    """Greedy decoding does not depend on the randomness mode (16 tokens are enough)."""
    from gigatok_core.ar import sample_generators

    cfg, sampling = RUNS["greedy_cfg4_constant"]
    drawer = Drawer("per-sample", generators=sample_generators(0, [22, 388], [0, 0]))
    tokens = generate(model, LABELS, drawer, cfg=cfg, sampling=sampling, num_tokens=16)
    assert torch.equal(tokens, golden["greedy_cfg4_constant"]["tokens"][:, :16].long())
