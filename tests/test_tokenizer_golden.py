"""Parity with the official S-S tokenizer on the golden fixture (docs/fidelity.md#tokenizer-inference).

The model is built once per module with the fixture's weight-fill rule; tolerances are those
suggested in docs/fidelity.md#tokenizer-inference.
"""

from __future__ import annotations

import pytest
import torch
from conftest import fixture_path
from weightfill import entries_of, fill_state_dict

from gigatok_core.registry import tokenizer_preset
from gigatok_core.tokenizer import VQTokenizer, build_tokenizer
from gigatok_core.tokenizer.quantizer import entropy_loss


@pytest.fixture(scope="module")
def golden() -> dict:
    g = torch.load(fixture_path("tok_SS_golden.pt"), map_location="cpu", weights_only=True)
    assert "rule v1" in g["fill_rule"] and "VQ_SS256.yaml" in g["meta"]
    return g


@pytest.fixture(scope="module", params=["nchw", "channels_last"])
def model(request: pytest.FixtureRequest) -> VQTokenizer:
    """As built (NCHW), and as :func:`load_tokenizer` ships it (channels_last)."""
    m = build_tokenizer(tokenizer_preset("s-s").config, with_distill=True, device="meta")
    sd = fill_state_dict(entries_of(m), "tokenizer-v1")
    m = m.to_empty(device="cpu")
    m.load_state_dict(sd, strict=True)
    m.eval()
    return m.use_channels_last() if request.param == "channels_last" else m


@pytest.fixture(scope="module")
def eval_run(model: VQTokenizer, golden: dict) -> dict:
    with torch.no_grad():
        h, inter = model.encode_latent(golden["input"], intermediates=True)
        q = model.quantize(h)
        _, _, d = model.quantize.search(h.permute(0, 2, 3, 1).reshape(-1, h.shape[1]))
        quant = model.codes_to_latent(golden["codes"])  # decode side fed with the golden codes
        rec_spatial, feat = model.decode_spatial(quant, distill=True)
        recon = model.decoder(rec_spatial)
    best2 = d.topk(2, dim=1, largest=False).values
    return {
        **inter,
        "pre_quant": h,
        "codes": q.codes,
        "quant_rot": q.z_q,
        "quant": quant,
        "vit_dec_out": rec_spatial,
        "distill_feat": feat,
        "recon": recon,
        "code_dist_gap": (best2[:, 1] - best2[:, 0]).view_as(golden["code_dist_gap"]),
        "entropy_loss_raw": entropy_loss(d),
    }


def _close(ours: torch.Tensor, ref: torch.Tensor, atol: float) -> None:
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    torch.testing.assert_close(ours, ref, atol=atol, rtol=0)


@pytest.mark.parametrize(
    ("key", "atol"),
    [
        ("cnn_enc", 1e-4),
        ("vit_enc_out", 2e-4),
        ("pre_quant", 2e-4),
        ("quant", 1e-5),
        ("quant_rot", 1e-5),
        ("vit_dec_out", 1e-4),
        ("distill_feat", 2e-4),
        ("recon", 1e-4),
        ("code_dist_gap", 1e-4),
    ],
)
def test_eval_tensors(eval_run: dict, golden: dict, key: str, atol: float) -> None:
    _close(eval_run[key], golden[key], atol)


def test_codes(eval_run: dict, golden: dict) -> None:
    ours, ref = eval_run["codes"], golden["codes"]
    assert ours.dtype == torch.int64 and ours.shape == ref.shape
    mismatch = ours != ref
    assert mismatch.float().mean() <= 0.005
    assert (golden["code_dist_gap"][mismatch] < 1e-3).all(), "a confident code differs"


def test_recon_uint8(eval_run: dict, golden: dict) -> None:
    pixels = (127.5 * eval_run["recon"] + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    diff = (pixels.int() - golden["recon_uint8"].int()).abs()
    assert diff.max() <= 1
    assert (diff > 0).float().mean() < 1e-3


def test_entropy_loss(eval_run: dict, golden: dict) -> None:
    torch.testing.assert_close(eval_run["entropy_loss_raw"], golden["entropy_loss_raw"], rtol=1e-4, atol=0)


def test_train_forward(model: VQTokenizer, golden: dict) -> None:
    model.quantize.codebook_used.zero_()
    model.train()
    try:
        with torch.no_grad():  # same values as with autograd, much cheaper
            out = model(golden["input"], rec_loss=True, distill=True)
    finally:
        model.eval()
    _close(out.recon, golden["train_recon"], 1e-4)
    _close(out.recon, golden["recon_from_quant_rot"], 1e-4)  # eval decode(quant_rot) is the same path
    _close(out.direct_recon, golden["train_direct_recon"], 1e-4)
    for ours, key in [
        (out.vq_loss, "train_vq_loss"),
        (out.commit_loss, "train_commit_loss"),
        (out.fea_rec_loss, "train_fea_rec_loss"),
    ]:
        torch.testing.assert_close(ours, golden[key], rtol=1e-4, atol=0)
    assert out.usage == pytest.approx(golden["train_codebook_usage"].item(), rel=1e-6)
    assert out.entropy_loss.item() == 0.0  # entropy_loss_ratio is 0 for S-S
    assert out.distill_feat.shape == (2, 256, 768)
