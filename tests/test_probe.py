"""Linear probing (docs/recipes.md#linear-probing): feature locations, head, LARS, schedule, the loop, cache, resume."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from probekit import colour_folder, small_gpt, small_tokenizer
from torch import nn

from gigatok_core.errors import GigatokError
from gigatok_core.probe import (
    LARS,
    GPTFeatures,
    ProbeConfig,
    ProbeHead,
    TokenizerFeatures,
    lr_at,
    read_splits,
    run_probe,
    scaled_lr,
    topk_correct,
)
from gigatok_core.probe.data import ProbeImages
from gigatok_core.tokenizer.vit import multi_level_queries

CPU = torch.device("cpu")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("colours")
    colour_folder(root / "train", 8, seed=0)
    colour_folder(root / "val", 4, seed=1)
    return read_splits(root / "train", root / "val", None)


@pytest.fixture(scope="module")
def flat_splits(tmp_path_factory: pytest.TempPathFactory):
    """Noise-free colours: every image of a class encodes to the same codes."""
    root = tmp_path_factory.mktemp("flat")
    colour_folder(root / "train", 8, seed=0, noise=0)
    colour_folder(root / "val", 4, seed=1, noise=0)
    return read_splits(root / "train", root / "val", None)


def _images(n: int = 3) -> torch.Tensor:
    return torch.rand(n, 3, 64, 64, generator=torch.Generator().manual_seed(3)) * 2 - 1


# ---------------------------------------------------------------------------------------------
# Where the features are taken
# ---------------------------------------------------------------------------------------------
def test_gpt_features_are_block_n_layer_half_on_the_null_class_mean_pooled() -> None:
    gpt, tok = small_gpt(n_layer=4), small_tokenizer()
    ex = GPTFeatures(gpt, tok).eval()
    assert ex.layer == 2  # n_layer // 2, 1-based
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        gpt.layers[1].register_forward_hook(lambda m, i, o: seen.__setitem__("block", o)),
        gpt.cls_embedding.embedding_table.register_forward_hook(
            lambda m, i, o: seen.__setitem__("labels", i[0])
        ),
        gpt.tok_embeddings.register_forward_hook(lambda m, i, o: seen.__setitem__("tokens", i[0])),
        gpt.layers[2].register_forward_hook(lambda m, i, o: seen.__setitem__("later", o)),
        gpt.norm.register_forward_hook(lambda m, i, o: seen.__setitem__("norm", o)),
    ]
    x = _images()
    feats = ex(x)
    for h in hooks:
        h.remove()
    codes = tok.encode(x)
    assert feats.shape == (3, 64)
    torch.testing.assert_close(feats, seen["block"].mean(dim=1))  # all 16 positions, class slot included
    assert seen["block"].shape[1] == 16
    assert seen["labels"].tolist() == [gpt.null_class] * 3 == [1000] * 3
    assert torch.equal(seen["tokens"], codes[:, :-1])
    assert "later" not in seen and "norm" not in seen  # nothing after the feature block runs
    assert GPTFeatures(gpt, tok, layer=3).layer == 3


def test_gpt_stays_in_train_mode_while_the_head_trains() -> None:
    ex = GPTFeatures(small_gpt(), small_tokenizer())
    ex.train()
    assert ex.gpt.training and not ex.tokenizer.training
    x = _images(2)
    assert not torch.equal(ex(x), ex(x))  # dropout 0.1 is active
    ex.eval()
    torch.testing.assert_close(ex(x), ex(x))


def test_tokenizer_features_locations() -> None:
    tok = small_tokenizer()
    x = _images()
    enc, dec = tok.vit_encoder, tok.vit_decoder
    last: dict[str, torch.Tensor] = {}
    h1 = enc.transformer[-1].register_forward_hook(lambda m, i, o: last.__setitem__("enc", o))
    h2 = dec.transformer[-1].register_forward_hook(lambda m, i, o: last.__setitem__("dec", o))
    with torch.no_grad():
        q = tok.quantize(tok.encode_latent(x))
        tok.decode_spatial(q.z_q)
    h1.remove()
    h2.remove()
    with torch.no_grad():
        want_enc = enc.ln_post(last["enc"])  # (B, N, W): ln_post, before conv_out
        want_fix = torch.einsum("bnw,zw->bnz", want_enc, enc.conv_out.weight[:, :, 0, 0]) + enc.conv_out.bias
        want_dec = dec.ln_post(last["dec"])
    torch.testing.assert_close(TokenizerFeatures(tok)(x), want_enc.mean(1))
    torch.testing.assert_close(TokenizerFeatures(tok, "fix_dim")(x), want_fix.mean(1))
    torch.testing.assert_close(TokenizerFeatures(tok, "decoder")(x), want_dec.mean(1))
    assert TokenizerFeatures(tok).dim == 64 and TokenizerFeatures(tok, "fix_dim").dim == 64


def test_tokenizer_encoder_features_against_a_manual_forward() -> None:
    """The encoder's ln_post tokens rebuilt from the module's parts (docs/tokenizer.md#encoder)."""
    tok = small_tokenizer()
    enc, x = tok.vit_encoder, _images(2)
    with torch.no_grad():
        s = tok.encoder(x).flatten(2).transpose(1, 2)  # (B, g*g, Z)
        memory = enc.encoder_embed(enc.ln_pre(s))
        t = enc.global_proj(multi_level_queries(memory, enc.grid, enc.num_tokens))
        pos, qpos = (
            enc.positional_embedding.transpose(0, 1),
            enc.latent_token_positional_embedding.transpose(0, 1),
        )
        for layer in enc.transformer:
            t = layer(t, memory, pos=pos, query_pos=qpos)
        want = enc.ln_post(t).mean(1)
    torch.testing.assert_close(TokenizerFeatures(tok)(x), want)


def test_feature_extractors_refuse_misfits() -> None:
    with pytest.raises(GigatokError, match="does not fit"):
        GPTFeatures(small_gpt(block_size=32), small_tokenizer())
    with pytest.raises(GigatokError, match="layer 5 does not exist"):
        GPTFeatures(small_gpt(), small_tokenizer(), layer=5)
    with pytest.raises(GigatokError, match="unknown tokenizer feature"):
        TokenizerFeatures(small_tokenizer(), "middle")


# ---------------------------------------------------------------------------------------------
# Head, optimiser, schedule
# ---------------------------------------------------------------------------------------------
def test_head_is_affine_free_batchnorm_then_linear_with_the_official_init() -> None:
    head = ProbeHead(512, 1000, generator=torch.Generator().manual_seed(0))
    assert isinstance(head.norm, nn.BatchNorm1d) and not head.norm.affine and head.norm.eps == 1e-6
    assert list(head.norm.parameters()) == []
    w = head.linear.weight
    w = w.detach()  # trunc-normal(std 0.01) cut at +-2 absolute (torch/timm): in effect N(0, 0.01)
    assert abs(float(w.std()) - 0.01) < 5e-4 and abs(float(w.mean())) < 5e-4
    assert float(head.linear.bias.detach().abs().max()) <= 1 / math.sqrt(512)  # PyTorch's default bias init


def _lars_reference(params, grads_seq, *, lr, wd, momentum, trust):
    """The defining formula, written out per step."""
    params = [p.clone() for p in params]
    mus = [torch.zeros_like(p) for p in params]
    for grads in grads_seq:
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            d = g.clone()
            if p.ndim > 1:
                d = d + wd * p
                pn, dn = p.norm(), d.norm()
                if pn > 0 and dn > 0:
                    d = d * (trust * pn / dn)
            mus[i] = momentum * mus[i] + d
            params[i] = p - lr * mus[i]
    return params


@pytest.mark.parametrize("wd", [0.0, 0.05])
def test_lars_matches_its_defining_formula(wd: float) -> None:
    gen = torch.Generator().manual_seed(0)
    w = nn.Parameter(torch.randn(5, 4, generator=gen))
    b = nn.Parameter(torch.randn(5, generator=gen))
    z = nn.Parameter(torch.zeros(3, 2))  # zero norm: no trust scaling
    start = [w.detach().clone(), b.detach().clone(), z.detach().clone()]
    grads_seq = [[torch.randn(p.shape, generator=gen) for p in (w, b, z)] for _ in range(3)]
    opt = LARS([w, b, z], lr=0.3, weight_decay=wd)
    assert opt.defaults["momentum"] == 0.9 and opt.defaults["trust_coefficient"] == 0.001
    for grads in grads_seq:
        for p, g in zip((w, b, z), grads, strict=True):
            p.grad = g.clone()
        opt.step()
    want = _lars_reference(start, grads_seq, lr=0.3, wd=wd, momentum=0.9, trust=0.001)
    for got, ref in zip((w, b, z), want, strict=True):
        torch.testing.assert_close(got.detach(), ref, rtol=1e-6, atol=1e-7)
    assert not torch.equal(z.detach(), start[2])  # zero-norm 2-D param: plain momentum step


def test_lr_scaling_warmup_and_cosine() -> None:
    assert scaled_lr(0.1, 128) == pytest.approx(0.05)  # one GPU, official LIN_BSZ
    assert scaled_lr(0.1, 128 * 8) == pytest.approx(0.4)
    kw = {"lr": 0.4, "epochs": 90, "warmup_epochs": 10}
    assert lr_at(0, **kw) == 0.0
    assert lr_at(5, **kw) == pytest.approx(0.2)  # linear from 0
    assert lr_at(10, **kw) == pytest.approx(0.4)
    assert lr_at(50, **kw) == pytest.approx(0.2)  # half-way down the half-cosine
    assert lr_at(10 + 80 / 3, **kw) == pytest.approx(0.4 * 0.5 * (1 + math.cos(math.pi / 3)))
    assert lr_at(90, **kw) == pytest.approx(0.0, abs=1e-12)
    assert ProbeConfig().warmup == 10 and ProbeConfig().epochs == 90 and ProbeConfig().blr == 0.1
    assert ProbeConfig(epochs=9).warmup == 1


def test_topk_correct_caps_k_at_the_class_count() -> None:
    logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0], [2.0, 3.0, 1.0]])
    assert topk_correct(logits, torch.tensor([0, 1, 2])) == [1, 3]


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------
FAST = {"batch_size": 4, "blr": 16.0, "trust_coefficient": 0.05}  # a test-sized step: few iterations


def test_tokenizer_probe_learns_separable_classes_online(splits, tmp_path: Path) -> None:
    cfg = ProbeConfig(epochs=8, **FAST)
    res = run_probe(TokenizerFeatures(small_tokenizer()), *splits, cfg, tmp_path / "run", device=CPU)
    assert res is not None and res.top1 == 100.0 and res.top5 == 100.0
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == list(range(1, 9))
    assert {"epoch", "top1", "top5", "loss"} <= set(lines[0])
    final = json.loads((tmp_path / "run" / "results.json").read_text())
    assert final["top1"] == 100.0 and final["epochs"] == 8 and final["lr"] == pytest.approx(16.0 * 4 / 256)


def test_gpt_probe_learns_separable_classes_cached(flat_splits, tmp_path: Path) -> None:
    cfg = ProbeConfig(epochs=10, cache_features=True, **FAST)
    res = run_probe(
        GPTFeatures(small_gpt(), small_tokenizer()), *flat_splits, cfg, tmp_path / "run", device=CPU
    )
    assert res is not None and res.top1 == 100.0
    assert res.history[0]["top1"] < 100.0  # it learned; it did not start there


def test_cached_and_online_agree_without_augmentation(splits, tmp_path: Path) -> None:
    ex = TokenizerFeatures(small_tokenizer())
    runs = {}
    for cached in (False, True):
        cfg = ProbeConfig(epochs=3, augment=False, cache_features=cached, **FAST)
        runs[cached] = run_probe(ex, *splits, cfg, tmp_path / f"run{cached}", device=CPU)
    for a, b in zip(runs[False].history, runs[True].history, strict=True):
        assert a["top1"] == b["top1"] and a["top5"] == b["top5"]
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
    assert len(list((tmp_path / "runTrue" / "features").glob("*/train-*-center-00000.npy"))) == 1


def test_cached_draws_follow_the_train_augmentation(splits, tmp_path: Path) -> None:
    ex = TokenizerFeatures(small_tokenizer())
    cfg = ProbeConfig(epochs=1, cache_features=True, cache_draws=2, cache_dir=str(tmp_path / "cache"), **FAST)
    run_probe(ex, *splits, cfg, tmp_path / "run", device=CPU)
    (folder,) = (tmp_path / "cache").iterdir()
    d0, d1 = (torch.from_numpy(np.load(p)) for p in sorted(folder.glob("train-*-aug0-d*-00000.npy")))
    assert not torch.allclose(d0, d1)  # two different crops/flips per image
    images = ProbeImages(splits[0], 64, augment=True, seed=0)
    images.set_draw(1)
    torch.testing.assert_close(d1[5], ex.eval()(images[5][0][None])[0], rtol=1e-4, atol=1e-5)
    # Centre-crop features of the same split land beside them, not in place of draw 0.
    run_probe(ex, *splits, dataclasses.replace(cfg, cache_draws=0), tmp_path / "run0", device=CPU)
    (center,) = folder.glob("train-*-center-00000.npy")
    assert not torch.allclose(torch.from_numpy(np.load(center)), d0)
    assert len(list(folder.glob("val-*-center-00000.npy"))) == 1  # the val features were reused


def test_resume_after_a_kill_continues_exactly(splits, tmp_path: Path) -> None:
    ex = GPTFeatures(small_gpt(), small_tokenizer())  # train-mode dropout: the RNG must be restored too
    cfg = ProbeConfig(epochs=3, **FAST)
    full = run_probe(ex, *splits, cfg, tmp_path / "full", device=CPU)

    def kill(row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_probe(ex, *splits, cfg, tmp_path / "cut", device=CPU, on_epoch=kill)
    assert len((tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()) == 2
    resumed = run_probe(ex, *splits, cfg, tmp_path / "cut", device=CPU)

    def strip(history):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in history]

    assert strip(resumed.history) == strip(full.history)
    with pytest.raises(GigatokError, match="other settings"):
        run_probe(ex, *splits, ProbeConfig(epochs=4, **FAST), tmp_path / "cut", device=CPU)

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("out of memory")

    (tmp_path / "failed").mkdir()
    (tmp_path / "failed" / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError):
        run_probe(ex, *splits, cfg, tmp_path / "failed", device=CPU, on_progress=out_of_memory)
    assert [p.name for p in (tmp_path / "failed").iterdir()] == ["notes.txt"]  # released: no config.json


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------
def test_bad_splits_are_refused(tmp_path: Path) -> None:
    colour_folder(tmp_path / "train", 2, seed=0)
    colour_folder(tmp_path / "val", 2, seed=0, classes=((1, 2, 3), (4, 5, 6)))
    (tmp_path / "val" / "other").mkdir()
    with pytest.raises(GigatokError, match="different class folders") as err:
        read_splits(tmp_path / "train", tmp_path / "val", None)
    assert "class2" in str(err.value) and "other" in str(err.value)
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(GigatokError, match="hold no image"):
        read_splits(tmp_path / "train", tmp_path / "empty", None)
    (tmp_path / "flat").mkdir()
    with pytest.raises(GigatokError, match="no class sub-folders"):
        read_splits(tmp_path / "flat", tmp_path / "val", None)
    with pytest.raises(GigatokError, match="is not a folder"):
        read_splits(tmp_path / "missing", tmp_path / "val", None)
    train, val = read_splits(tmp_path / "train", tmp_path / "train", 1)
    assert len(train) == 3 and train.labels == (0, 1, 2)
    with pytest.raises(GigatokError, match="fewer than one batch"):
        run_probe(
            TokenizerFeatures(small_tokenizer()),
            train,
            val,
            ProbeConfig(batch_size=4),
            tmp_path / "o",
            device=CPU,
        )
    with pytest.raises(GigatokError, match="batch_size"):
        ProbeConfig(batch_size=0)


def test_gpt_checkpoint_may_be_a_training_run_folder(tmp_path: Path) -> None:
    from gigatok_core.ar.load import load_gpt
    from gigatok_core.checkpoints.training import save_checkpoint
    from gigatok_core.probe.api import gpt_weights_file

    gpt = small_gpt(block_size=256)  # gpt-tiny's own shape
    for step in (1, 2):
        save_checkpoint(
            tmp_path / "run" / "checkpoints",
            weights={"model": gpt.state_dict()},
            state={},
            meta={"step": step, "kind": "gpt", "preset": "gpt-tiny"},
        )
    path = gpt_weights_file(tmp_path / "run")
    assert path == tmp_path / "run" / "checkpoints" / "step-00000002" / "model.safetensors"
    model, _ = load_gpt("gpt-tiny", checkpoint=path)
    torch.testing.assert_close(model.state_dict(), gpt.state_dict())
    (tmp_path / "empty").mkdir()
    with pytest.raises(GigatokError, match="folder without gpt weights"):
        gpt_weights_file(tmp_path / "empty")
    assert gpt_weights_file(path) == path and gpt_weights_file(None) is None


# ---------------------------------------------------------------------------------------------
# The request: the decisions a Python user and the CLI share
# ---------------------------------------------------------------------------------------------
def test_request_builds_the_recipe_in_order_with_the_official_precision(tmp_path: Path, monkeypatch) -> None:
    from gigatok_core import dist
    from gigatok_core.probe import ProbeRequest, default_precision

    (tmp_path / "p.yaml").write_text("epochs: 5\nmomentum: 0.8\n")
    req = ProbeRequest.build(
        "gpt",
        "tr",
        "va",
        tmp_path / "run",
        settings={"epochs": 90, "blr": 0.2, "precision": None, "cache_dir": tmp_path / "c"},
        config_file=tmp_path / "p.yaml",
        overrides=["momentum=0.95"],
        device="cpu",
        gpt="gpt-tiny@tiny",
    )
    cfg = req.config  # options, then the file, then key=value
    assert (cfg.epochs, cfg.blr, cfg.momentum, cfg.cache_dir) == (5, 0.2, 0.95, str(tmp_path / "c"))
    assert cfg.precision == "fp32" and req.title == "linear probe: gpt-tiny@tiny"
    assert req.train_split == Path("tr") and req.output == tmp_path / "run"
    explicit = ProbeRequest.build("gpt", "tr", "va", "o", settings={"precision": "bf16"}, gpt="gpt-tiny")
    assert explicit.config.precision == "bf16"
    monkeypatch.setattr(dist, "resolve_device", lambda device: torch.device("cuda"))
    assert default_precision("gpt", "cuda") == "fp16" and default_precision("tokenizer", "cuda") == "fp32"
    tok = ProbeRequest.build("tokenizer", "tr", "va", "o", tokenizer="tiny", mode="decoder", device="cuda")
    assert tok.config.precision == "fp32" and tok.title == "linear probe: tokenizer tiny (decoder)"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backbone": "vae", "gpt": "gpt-tiny"}, "backbone must be gpt or tokenizer"),
        ({"backbone": "gpt"}, "no GPT preset to probe"),
        ({"backbone": "tokenizer"}, "needs the tokenizer preset"),
        ({"backbone": "tokenizer", "tokenizer": "tiny", "mode": "conv"}, "mode must be one of"),
        ({"backbone": "tokenizer", "tokenizer": "tiny", "settings": {"layer": 2}}, "GPT probes only"),
        ({"backbone": "gpt", "gpt": "gpt-tiny", "overrides": ["momentum"]}, "unexpected argument"),
        ({"backbone": "gpt", "gpt": "gpt-tiny", "overrides": ["momentun=0.5"]}, "known keys"),
    ],
)
def test_request_refuses_bad_settings_by_name(kwargs: dict, message: str) -> None:
    from gigatok_core.probe import ProbeRequest

    backbone = kwargs.pop("backbone")
    with pytest.raises(GigatokError, match=message):
        ProbeRequest.build(backbone, "tr", "va", "o", device="cpu", **kwargs)


def test_request_takes_the_gpt_a_training_run_records(splits, tmp_path: Path) -> None:
    from gigatok_core.checkpoints.training import save_checkpoint
    from gigatok_core.probe import ProbeRequest

    meta = {"step": 1, "kind": "gpt", "preset": "gpt-tiny"}
    save_checkpoint(
        tmp_path / "gptrun" / "checkpoints", weights={"model": small_gpt().state_dict()}, state={}, meta=meta
    )
    train, val = (s.root for s in splits)
    req = ProbeRequest.build(
        "gpt", train, val, tmp_path / "o", gpt_checkpoint=tmp_path / "gptrun", device="cpu"
    )
    assert req.gpt == "gpt-tiny"
    assert req.required_files() == []  # gpt-tiny and tiny: seeded random weights, nothing to fetch
    missing = ProbeRequest.build("tokenizer", tmp_path / "nope", val, "o", tokenizer="tiny", device="cpu")
    with pytest.raises(GigatokError, match="is not a folder"):
        missing.required_files()  # the splits are checked before anything is fetched


@pytest.mark.gpu
@pytest.mark.parametrize("cached", [False, True])
def test_fp16_probe_on_cuda_learns(splits, tmp_path: Path, cached: bool) -> None:
    """The official GPT-probe precision: fp16 autocast with a GradScaler."""
    dev = torch.device("cuda")
    cfg = ProbeConfig(epochs=8, precision="fp16", cache_features=cached, **FAST)
    res = run_probe(TokenizerFeatures(small_tokenizer()), *splits, cfg, tmp_path / "run", device=dev)
    assert res is not None and res.top1 == 100.0
