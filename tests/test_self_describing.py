"""Loaders trust what a gigatok checkpoint says about itself (issue 9 §2), not a guess from shapes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gigatok_core.ar import load_gpt
from gigatok_core.ar.load import resolve_gpt
from gigatok_core.checkpoints.files import save_weights
from gigatok_core.checkpoints.training import save_checkpoint
from gigatok_core.config import GPTConfig, TokenizerConfig, TokenizerTrainConfig, config_to_dict
from gigatok_core.errors import GigatokError
from gigatok_core.tokenizer import build_tokenizer, load_tokenizer
from gigatok_core.tokenizer.load import checkpoint_config


def _tokenizer_file(path: Path, cfg: TokenizerConfig, preset: str | None) -> dict[str, torch.Tensor]:
    torch.manual_seed(3)
    sd = build_tokenizer(cfg).state_dict()
    save_weights(path, sd, {"kind": "tokenizer", "preset": preset, "config": config_to_dict(cfg)})
    return sd


def test_tokenizer_architecture_comes_from_the_metadata(tmp_path: Path) -> None:
    # No registered preset has a 512-entry codebook: shapes alone could not build this model.
    cfg = TokenizerConfig.from_name("tiny", codebook_size=512)
    sd = _tokenizer_file(tmp_path / "mine.safetensors", cfg, None)
    model = load_tokenizer(str(tmp_path / "mine.safetensors"))
    assert model.config == cfg
    assert checkpoint_config(tmp_path / "mine.safetensors", "tiny")[0] == cfg  # for the encoder-only loader
    official = tmp_path / "official.pt"
    torch.save(
        {"model": build_tokenizer(TokenizerConfig.from_name("tiny"), with_distill=True).state_dict()},
        official,
    )
    assert checkpoint_config(official, None) == (TokenizerConfig.from_name("tiny"), "tokenizer preset 'tiny'")
    assert torch.equal(model.state_dict()["quantize.embedding.weight"], sd["quantize.embedding.weight"])


def test_another_preset_than_the_saved_one_is_refused_by_name(tmp_path: Path) -> None:
    cfg = TokenizerConfig.from_name("tiny", codebook_size=512)
    _tokenizer_file(tmp_path / "t.safetensors", cfg, "tiny")
    # Asked as the preset it was saved as: its own (overridden) config is built.
    assert load_tokenizer("tiny", checkpoint=tmp_path / "t.safetensors").config == cfg
    # b-l and b-l-dino share every shape; only the file's metadata tells them apart.
    save_weights(
        tmp_path / "bl.safetensors",
        {"w": torch.zeros(1)},
        {"kind": "tokenizer", "preset": "b-l", "config": config_to_dict(TokenizerConfig.from_name("b-l"))},
    )
    with pytest.raises(GigatokError, match="holds tokenizer 'b-l', not 'b-l-dino'") as info:
        load_tokenizer("b-l-dino", checkpoint=tmp_path / "bl.safetensors")
    assert info.value.hint == "use --tokenizer b-l"
    with pytest.raises(GigatokError, match="holds a tokenizer checkpoint, not a gpt"):
        resolve_gpt("gpt-tiny", checkpoint=tmp_path / "t.safetensors")


def test_a_run_folder_loads_its_latest_checkpoint(tmp_path: Path) -> None:
    """A run folder as `gigatok train` writes it (save_checkpoint): the latest step, EMA preferred."""
    train_cfg = TokenizerTrainConfig.from_name("tiny", overrides=["model.codebook_size=512"])
    torch.manual_seed(3)
    base = build_tokenizer(train_cfg.model).state_dict()
    for step in (10, 20):
        weights = {"model": base, "ema": {k: v + step for k, v in base.items()}}
        meta = {"step": step, "kind": "tokenizer", "preset": "tiny", "config": config_to_dict(train_cfg)}
        save_checkpoint(tmp_path / "run" / "checkpoints", weights=weights, state={}, meta=meta)
    model = load_tokenizer("tiny", checkpoint=tmp_path / "run")
    assert model.config == train_cfg.model  # the run's overridden codebook, not the preset's
    key = "quantize.embedding.weight"
    assert torch.equal(model.state_dict()[key], base[key] + 20)


def test_gpt_metadata_gives_vocab_and_the_paired_tokenizer(tmp_path: Path) -> None:
    cfg = GPTConfig.from_name("gpt-tiny", vocab_size=512)
    torch.manual_seed(0)
    from gigatok_core.ar import build_gpt

    sd = build_gpt(cfg).state_dict()
    path = tmp_path / "gpt.safetensors"
    meta = {
        "kind": "gpt",
        "preset": "gpt-tiny",
        "config": config_to_dict(cfg),
        "tokenizer": {"preset": "tiny"},
    }
    save_weights(path, sd, meta)
    # The tiny tokenizer has 1024 codes, so the 512-token GPT is refused against it, by the file's config.
    with pytest.raises(GigatokError, match="512 token ids"):
        resolve_gpt("gpt-tiny", checkpoint=path)
    # A file whose config fits its paired tokenizer loads with that config (3 layers, not the preset's 2),
    # and the pairing in its metadata picks the tokenizer.
    cfg = GPTConfig.from_name("gpt-tiny", n_layer=3)
    sd = build_gpt(cfg).state_dict()
    save_weights(path, sd, {**meta, "config": config_to_dict(cfg)})
    model, tok = load_gpt("gpt-tiny", checkpoint=path)
    assert model.config.n_layer == 3 and tok == "tiny"
    with pytest.raises(GigatokError, match="holds a gpt-tiny GPT, not gpt-b") as info:
        resolve_gpt("gpt-b", tokenizer="tiny", checkpoint=path)
    assert info.value.hint == "use --gpt gpt-tiny"


def test_download_conversion_writes_self_describing_files(tmp_path: Path) -> None:
    """The cache's safetensors (download / --import) say which preset they are: b-l-dino is not b-l."""
    from gigatok_core.checkpoints.files import read_weights_meta
    from gigatok_core.hub import structure
    from gigatok_core.registry import tokenizer_preset

    raw = tmp_path / "VQ_BL256_dino_disc.pt"  # the cache keeps the registered file name
    torch.save({"model": {"w": torch.ones(2)}}, raw)
    structure.convert(raw, tmp_path / "tok.safetensors", kind="tokenizer", expected=None, what="b-l-dino")
    meta = read_weights_meta(tmp_path / "tok.safetensors")
    assert meta is not None and (meta["kind"], meta["preset"], meta["entry"]) == (
        "tokenizer",
        "b-l-dino",
        "model",
    )
    assert meta["config"] == config_to_dict(tokenizer_preset("b-l-dino").config)

    raw = tmp_path / "GPT_B256_e300_VQ_BL_dino_disc.pt"
    torch.save({"model": {"w": torch.ones(2)}}, raw)
    structure.convert(
        raw,
        tmp_path / "gpt.safetensors",
        kind="gpt",
        expected=None,
        what="x",
        metadata={"source_sha256": "ab"},
    )
    meta = read_weights_meta(tmp_path / "gpt.safetensors")
    assert meta is not None and (meta["kind"], meta["preset"], meta["release"]) == (
        "gpt",
        "gpt-b",
        "gpt-b@b-l-dino",
    )
    assert meta["tokenizer"]["preset"] == "b-l-dino" and meta["source_sha256"] == "ab"
    assert GPTConfig.from_checkpoint(tmp_path / "gpt.safetensors") == GPTConfig.from_name("gpt-b")
