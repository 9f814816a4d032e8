"""Tokenizer building blocks against their definitions, and the tiny preset end to end."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from weightfill import entries_of, fill_state_dict

from gigatok_core.errors import GigatokError
from gigatok_core.registry import tokenizer_preset
from gigatok_core.tokenizer import VQTokenizer, build_tokenizer, load_tokenizer
from gigatok_core.tokenizer.cnn import (
    AdaptiveGroupNorm,
    D2SUpsample,
    group_norm,
    stable_group_norm,
    style_stats,
)
from gigatok_core.tokenizer.quantizer import VectorQuantizer, rotate_to
from gigatok_core.tokenizer.transformer import Attention, DecoderLayer
from gigatok_core.tokenizer.vit import multi_level_queries


# ---------------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------------
def test_attention_matches_nn_multihead_attention() -> None:
    torch.manual_seed(0)
    ours, ref = Attention(32, 4), nn.MultiheadAttention(32, 4)
    ref.load_state_dict(ours.state_dict())  # same parameter names and layout
    x, mem = torch.randn(2, 5, 32), torch.randn(2, 7, 32)
    qpos, pos = torch.randn(1, 5, 32), torch.randn(1, 7, 32)
    seq = lambda t: t.transpose(0, 1)  # noqa: E731 (B, L, C) -> (L, B, C)
    want = ref(seq(x + qpos), seq(x + qpos), seq(x), need_weights=False)[0]
    torch.testing.assert_close(ours.self_attention(x, qpos), seq(want), atol=1e-5, rtol=1e-5)
    want = ref(seq(x + qpos), seq(mem + pos), seq(mem), need_weights=False)[0]  # pos on keys only
    torch.testing.assert_close(ours.cross_attention(x, qpos, mem, pos), seq(want), atol=1e-5, rtol=1e-5)


def test_decoder_layer_matches_torch_prenorm_layer() -> None:
    torch.manual_seed(0)
    ours = DecoderLayer(32, 4)
    ref = nn.TransformerDecoderLayer(32, 4, 128, dropout=0.0, activation="gelu", norm_first=True)
    ref.load_state_dict(ours.state_dict())
    ref.eval()
    t, mem = torch.randn(2, 6, 32), torch.randn(2, 9, 32)
    want = ref(t.transpose(0, 1), mem.transpose(0, 1)).transpose(0, 1)  # no positional embeddings
    torch.testing.assert_close(ours(t, mem), want, atol=1e-5, rtol=1e-5)


def test_depth_to_space_is_dcr_not_pixel_shuffle() -> None:
    up = D2SUpsample(2)
    with torch.no_grad():
        up.conv1.weight.zero_()
        up.conv1.bias.copy_(torch.arange(8.0))  # conv output channel k is the constant k
    out = up(torch.zeros(1, 2, 1, 1))  # (1, 2, 2, 2)
    # channel (i*2 + j)*C + c -> output channel c at (i, j)
    want = torch.tensor([[[0.0, 2.0], [4.0, 6.0]], [[1.0, 3.0], [5.0, 7.0]]])
    assert torch.equal(out[0], want)
    assert not torch.equal(out, F.pixel_shuffle(torch.arange(8.0).view(1, 8, 1, 1), 2))


def test_adaptive_group_norm_uses_unbiased_style_variance() -> None:
    torch.manual_seed(0)
    style = torch.randn(2, 4, 3, 3)
    std, mean = style_stats(style)
    torch.testing.assert_close(std, torch.sqrt(style.flatten(2).var(dim=2, unbiased=True) + 1e-6))
    ada = AdaptiveGroupNorm(4, 32)
    x = torch.randn(2, 32, 5, 5)
    want = ada.gamma(std)[..., None, None] * F.group_norm(x, 32, eps=1e-6) + ada.beta(mean)[..., None, None]
    torch.testing.assert_close(ada(x, std, mean), want)


def test_multi_level_queries_layout() -> None:
    grid = 16
    memory = torch.arange(256.0).view(1, 256, 1).expand(1, 256, 2)  # token p = row p//16, col p%16
    q = multi_level_queries(memory, grid, 256)[0, :, 0]
    fmap = torch.arange(256.0).view(16, 16)
    assert q[0] == q[1] == fmap.mean()  # groups 0 and 1: the global mean
    assert torch.equal(q[2:4], torch.stack([fmap[:, :8].mean(), fmap[:, 8:].mean()]))  # 1 x 2, columns first
    assert q[4] == fmap[:8, :8].mean() and q[5] == fmap[:8, 8:].mean() and q[6] == fmap[8:, :8].mean()
    assert torch.equal(q[128:], fmap.view(8, 2, 16).mean(1).flatten())  # 8 x 16, kernel 2 x 1


def test_rotation_trick_value_and_gradient() -> None:
    torch.manual_seed(0)
    z = F.normalize(torch.randn(10, 8), dim=-1).requires_grad_()
    e = F.normalize(torch.randn(10, 8), dim=-1)
    out = rotate_to(z, e)
    torch.testing.assert_close(out, e, atol=5e-6, rtol=0)
    g = torch.randn(10, 8)
    (out * g).sum().backward()
    assert not torch.allclose(z.grad, g)  # not the straight-through estimator


def test_quantizer_search_losses_and_usage() -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(64, 4, beta=0.25, entropy_ratio=0.1).train()
    h = torch.randn(2, 4, 1, 5)
    out = vq(h)
    z = F.normalize(h.permute(0, 2, 3, 1).reshape(-1, 4), dim=-1)
    cb = F.normalize(vq.embedding.weight, dim=-1)
    assert torch.equal(out.codes.flatten(), (z @ cb.t()).argmax(1))  # nearest = largest cosine
    e = cb[out.codes.flatten()]
    torch.testing.assert_close(out.vq_loss, ((e - z) ** 2).mean())
    torch.testing.assert_close(out.commit_loss, 0.25 * ((e - z) ** 2).mean())
    assert out.entropy_loss.ndim == 0 and torch.isfinite(out.entropy_loss)
    used = vq.codebook_used
    assert torch.equal(used[-10:], out.codes.flatten().float()) and (used[:-10] == 0).all()
    assert out.usage == pytest.approx(len(set(out.codes.flatten().tolist()) | {0}) / 64)


# ---------------------------------------------------------------------------------------------
# The tiny preset end to end
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny() -> VQTokenizer:
    """tiny with the golden fill rule: unlike the official init it spreads tokens over many codes."""
    model = load_tokenizer("tiny")
    model.load_state_dict(fill_state_dict(entries_of(model), "tokenizer-v1"))
    return model


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 256, 256, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_round_trip_shapes_and_batch_independence(tiny: VQTokenizer) -> None:
    x = _images(2)
    codes = tiny.encode(x)
    assert codes.shape == (2, 256) and codes.dtype == torch.int64
    assert 0 <= codes.min() and codes.max() < tiny.config.codebook_size
    assert codes.unique().numel() > 10
    singles = torch.cat([tiny.encode(x[i : i + 1]) for i in range(2)])
    assert torch.equal(codes, singles)
    recon = tiny.decode_codes(codes)
    assert recon.shape == x.shape and recon.dtype == torch.float32 and torch.isfinite(recon).all()
    torch.testing.assert_close(tiny.decode_codes(codes[1:2]), recon[1:2], atol=1e-4, rtol=0)
    with torch.no_grad():  # eval forward = decode of the rotated latent = decode of the codes
        torch.testing.assert_close(tiny(x[:1]).recon, recon[:1], atol=1e-4, rtol=0)


def test_bad_inputs_are_user_errors(tiny: VQTokenizer) -> None:
    with pytest.raises(GigatokError, match="256"):
        tiny.encode(torch.zeros(1, 3, 128, 128))
    with pytest.raises(GigatokError, match="codes must lie"):
        tiny.decode_codes(torch.full((1, 256), tiny.config.codebook_size))
    with pytest.raises(GigatokError, match="shape"):
        tiny.decode_codes(torch.zeros(1, 100, dtype=torch.long))


def test_train_forward_gradients() -> None:
    model = load_tokenizer("tiny", with_distill=True).train()
    out = model(_images(1), rec_loss=True)
    assert out.direct_recon.shape == out.recon.shape and out.distill_feat.shape == (1, 256, 32)
    assert out.usage is not None and out.fea_rec_loss.ndim == 0
    loss = out.recon.square().mean() + out.codebook_loss + out.fea_rec_loss + out.distill_feat.mean()
    loss.backward()
    for name in (
        "encoder.conv_in.weight",
        "quantize.embedding.weight",
        "s1to2decoder.distill_mlp.0.weight",
        "s2to1encoder.latent_token_positional_embedding",
    ):
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


@pytest.mark.parametrize("layer", ["plain", "decoder_layer"])
def test_2d_variant_round_trip(layer: str) -> None:
    cfg = dataclasses.replace(tokenizer_preset("tiny").config, arch="2d", transformer_layer_type=layer)
    torch.manual_seed(0)
    model = VQTokenizer(cfg, with_distill=True).eval()
    codes = model.encode(_images(1))
    assert codes.shape == (1, 256)
    with torch.no_grad():
        assert model.codes_to_latent(codes).shape == (1, 8, 16, 16)
        rec, feat = model.decode_spatial(model.codes_to_latent(codes), distill=True)
    assert rec.shape == (1, 64, 16, 16) and feat.shape == (1, 256, 32)
    assert model.decode_codes(codes).shape == (1, 3, 256, 256)


def test_bf16_model_runs_with_fp32_codebook_search(tiny: VQTokenizer) -> None:
    x = _images(1)
    codes32 = tiny.encode(x)
    recon32 = tiny.decode_codes(codes32)
    half = load_tokenizer("tiny", dtype=torch.bfloat16)
    half.load_state_dict(tiny.state_dict())
    codes = half.encode(x)
    assert codes.dtype == torch.int64 and (codes == codes32).float().mean() > 0.7
    recon = half.decode_codes(codes32)
    assert recon.dtype == torch.bfloat16 and torch.isfinite(recon).all()
    assert (recon.float() - recon32).abs().mean() < 0.1  # bf16 rounding only, not a wrong path


def test_channels_last_gives_the_same_results(tiny: VQTokenizer) -> None:
    x = _images(2)
    assert not tiny.channels_last  # load_tokenizer keeps NCHW on CPU (channels_last on CUDA)
    fast = build_tokenizer(tiny.config, device="cpu").eval().use_channels_last()
    fast.load_state_dict(tiny.state_dict())
    assert fast.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert fast._check_images(x).is_contiguous(memory_format=torch.channels_last)
    codes = tiny.encode(x)
    assert torch.equal(fast.encode(x), codes)
    torch.testing.assert_close(fast.decode_codes(codes), tiny.decode_codes(codes), atol=1e-4, rtol=0)
    # batch independence holds in this layout too (the decoder's GroupNorms are the sensitive part)
    torch.testing.assert_close(fast.decode_codes(codes[1:]), fast.decode_codes(codes)[1:], atol=1e-4, rtol=0)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_group_norm_is_stable_for_a_large_mean_in_both_layouts(layout: str) -> None:
    # mean 4, std 0.01: torch's CPU channels_last kernel errs by ~45 here, the NCHW one by ~5e-5
    x = torch.randn(2, 64, 64, 64, generator=torch.Generator().manual_seed(0)) * 0.01 + 4
    want = F.group_norm(x.double(), 32, eps=1e-6)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    norm = group_norm(64)
    torch.testing.assert_close(norm(x).double(), want, atol=5e-4, rtol=0)
    torch.testing.assert_close(stable_group_norm(x).double(), want, atol=5e-4, rtol=0)


def test_d2s_upsample_is_the_same_in_both_layouts() -> None:
    torch.manual_seed(0)
    up = D2SUpsample(8).eval()
    x = torch.randn(2, 8, 4, 4)
    want = up(x)
    up.to(memory_format=torch.channels_last)
    got = up(x.contiguous(memory_format=torch.channels_last))
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def test_codebook_search_stays_fp32_under_autocast() -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(256, 8).eval()
    h = torch.randn(2, 8, 1, 16)
    want = vq(h).codes
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, _, d = vq.search(h.permute(0, 2, 3, 1).reshape(-1, 8))
        got = vq(h).codes
    assert d.dtype == torch.float32 and torch.equal(got, want)
