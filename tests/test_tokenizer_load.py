"""Loading tokenizer checkpoints: official layouts load, broken or foreign files give clear errors."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest
import torch

from gigatok_core.errors import GigatokError
from gigatok_core.registry import tokenizer_preset
from gigatok_core.tokenizer import build_tokenizer, load_tokenizer
from gigatok_core.tokenizer.load import guess_preset


class NotWeights:
    """An arbitrary class: pickling it into a checkpoint must make the file unloadable."""

    def __reduce__(self):
        return (print, ("this must never run",))


def _official_like(distill: bool = True) -> dict[str, torch.Tensor]:
    """A state dict shaped like an official tiny checkpoint (distill head included)."""
    torch.manual_seed(1)
    model = build_tokenizer(tokenizer_preset("tiny").config, with_distill=distill)
    return {k: v.clone() for k, v in model.state_dict().items()}


def _save(obj: object, path: Path) -> Path:
    torch.save(obj, path)
    return path


def test_official_training_checkpoint_loads(tmp_path: Path) -> None:
    sd = _official_like()
    ckpt = {
        "model": {f"module.{k}": v for k, v in sd.items()},
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0, 1]}]},
        "discriminator": {"conv.weight": torch.zeros(2)},
        "steps": 5000,
        "args": argparse.Namespace(vq_model="VQ-16", global_seed=0),
    }
    path = _save(ckpt, tmp_path / "0005000.pt")
    model = load_tokenizer("tiny", checkpoint=path)
    assert not model.training
    assert not any("distill_mlp" in k for k in model.state_dict())  # dropped by default
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k]), k
    with_head = load_tokenizer("tiny", checkpoint=path, with_distill=True)
    w = with_head.s1to2decoder.distill_mlp[0].weight
    assert torch.equal(w, sd["s1to2decoder.distill_mlp.0.weight"])


def test_ema_is_preferred(tmp_path: Path) -> None:
    sd = _official_like()
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in sd.items()}
    path = _save({"model": sd, "ema": ema}, tmp_path / "ckpt.pt")
    model = load_tokenizer("tiny", checkpoint=path)
    assert torch.equal(model.quant_conv.weight, ema["quant_conv.weight"])


def test_dtype_and_bare_state_dict(tmp_path: Path) -> None:
    path = _save(_official_like(distill=False), tmp_path / "bare.pt")
    model = load_tokenizer("tiny", checkpoint=path, dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
    with pytest.raises(GigatokError, match="missing keys"):  # the head was asked for but is not there
        load_tokenizer("tiny", checkpoint=path, with_distill=True)


def test_truncated_file(tmp_path: Path) -> None:
    path = _save({"model": _official_like()}, tmp_path / "cut.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(GigatokError, match=r"cut\.pt") as err:
        load_tokenizer("tiny", checkpoint=path)
    assert err.value.hint and "download" in err.value.hint


def test_wrong_preset_is_named(tmp_path: Path) -> None:
    cfg = dataclasses.replace(tokenizer_preset("tiny").config, decoder_width=128, decoder_depth=3)
    other = build_tokenizer(cfg, with_distill=True, device="meta").to_empty(device="cpu")
    path = _save({"model": other.state_dict()}, tmp_path / "other_preset.pt")
    with pytest.raises(GigatokError) as err:
        load_tokenizer("tiny", checkpoint=path)
    msg = str(err.value)
    assert "other_preset.pt" in msg and "'tiny'" in msg and "shape" in msg


def test_arbitrary_pickle_is_refused(tmp_path: Path) -> None:
    path = _save({"model": _official_like(), "evil": NotWeights()}, tmp_path / "evil.pt")
    with pytest.raises(GigatokError, match="not plain weights") as err:
        load_tokenizer("tiny", checkpoint=path)
    assert "(print)" in err.value.message and "weights_only" not in err.value.message


def test_a_file_that_is_no_checkpoint_says_so(tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "photo.png"
    Image.new("RGB", (4, 4)).save(path)
    with pytest.raises(GigatokError, match="is not a PyTorch checkpoint") as err:
        load_tokenizer("tiny", checkpoint=path)
    assert "weights_only" not in err.value.message + (err.value.hint or "")


def test_keys_left_out_are_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _save({"model": _official_like()}, tmp_path / "with_head.pt")
    with caplog.at_level("INFO", logger="gigatok"):
        load_tokenizer("tiny", checkpoint=path)
    notes = [r.getMessage() for r in caplog.records]
    assert any("s1to2decoder.distill_mlp.*" in n and "with_head.pt" in n for n in notes), notes


def test_missing_weights() -> None:
    with pytest.raises(GigatokError, match="no released weights"):
        load_tokenizer("b-l-train-new")
    with pytest.raises(GigatokError, match=r"VQ_SS256_2d_e100\.pt is not in the cache"):  # it has a record
        load_tokenizer("s-s-2d")
    with pytest.raises(GigatokError, match="not in the cache"):  # tests run offline with an empty cache
        load_tokenizer("s-s")
    with pytest.raises(GigatokError, match="unknown tokenizer preset"):
        load_tokenizer("s-x")


def test_tiny_random_weights_are_deterministic() -> None:
    torch.manual_seed(123)
    a = load_tokenizer("tiny").state_dict()
    torch.manual_seed(456)
    b = load_tokenizer("tiny").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["s1to2decoder.positional_embedding"].std() > 0.05


def test_checkpoint_path_as_name(tmp_path: Path) -> None:
    sd = _official_like()
    path = _save({"model": sd}, tmp_path / "mine.pt")
    model = load_tokenizer(str(path))
    assert model.config == tokenizer_preset("tiny").config
    assert torch.equal(model.post_quant_conv.weight, sd["post_quant_conv.weight"])
    odd = _save({"model": {"x.weight": torch.zeros(2)}}, tmp_path / "odd.pt")
    with pytest.raises(GigatokError, match="does not match any tokenizer preset"):
        load_tokenizer(str(odd))


@pytest.mark.parametrize(("name", "distill"), [("s-b", True), ("s-s-2d", False), ("xl-xxl", False)])
def test_guess_preset_from_shapes(name: str, distill: bool) -> None:
    model = build_tokenizer(tokenizer_preset(name).config, with_distill=distill, device="meta")
    assert guess_preset(model.state_dict()) == name
