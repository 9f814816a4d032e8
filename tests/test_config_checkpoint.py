"""``from_checkpoint``: configs read back from gigatok files, run folders and official files."""

from __future__ import annotations

import json

import pytest
import torch

from gigatok_core.checkpoints.files import save_weights
from gigatok_core.config import GPTConfig, GPTTrainConfig, TokenizerConfig, config_to_dict
from gigatok_core.config.source import OfficialCheckpoint
from gigatok_core.errors import GigatokError
from gigatok_core.registry import tokenizer_preset
from gigatok_core.tokenizer import build_tokenizer
from gigatok_core.tokenizer.load import tokenizer_config_of

ONE = torch.zeros(1)


def test_gigatok_safetensors_config_wins_over_shapes(tmp_path) -> None:
    # b-l and b-l-dino share every shape; the metadata tells them apart (and carries overrides).
    cfg = TokenizerConfig.from_name("tiny", codebook_size=512)
    path = tmp_path / "tok.safetensors"
    save_weights(path, {"w": ONE}, {"kind": "tokenizer", "preset": "tiny", "config": config_to_dict(cfg)})
    assert TokenizerConfig.from_checkpoint(path) == cfg
    with pytest.raises(GigatokError, match="tokenizer checkpoint, not a gpt"):
        GPTConfig.from_checkpoint(path)


def test_gigatok_safetensors_with_only_a_preset(tmp_path) -> None:
    path = tmp_path / "gpt.safetensors"
    save_weights(path, {"w": ONE}, {"kind": "gpt", "preset": "gpt-tiny"})
    assert GPTConfig.from_checkpoint(path) == GPTConfig.from_name("gpt-tiny")


def _write_ckpt(folder, step: int, cfg: GPTTrainConfig) -> None:
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(
        json.dumps({"kind": "gpt", "step": step, "config": config_to_dict(cfg)})
    )


def test_run_folder_gives_the_newest_checkpoints_config(tmp_path) -> None:
    old = GPTTrainConfig.from_name("gpt-tiny")
    new = GPTTrainConfig.from_name("gpt-tiny", model={"n_layer": 3})
    _write_ckpt(tmp_path / "run" / "checkpoints" / "step-00000900", 900, old)
    _write_ckpt(tmp_path / "run" / "checkpoints" / "step-00001000", 1000, new)
    assert GPTConfig.from_checkpoint(tmp_path / "run") == new.model
    assert GPTConfig.from_checkpoint(tmp_path / "run" / "checkpoints" / "step-00000900") == old.model
    assert (
        GPTConfig.from_checkpoint(tmp_path / "run" / "checkpoints" / "step-00000900" / "meta.json")
        == old.model
    )


def test_folder_without_checkpoints_is_explained(tmp_path) -> None:
    with pytest.raises(GigatokError, match="is a folder, and holds no checkpoints") as info:
        TokenizerConfig.from_checkpoint(tmp_path)
    assert "checkpoints/" in (info.value.hint or "")
    with pytest.raises(GigatokError, match="does not exist"):
        TokenizerConfig.from_checkpoint(tmp_path / "missing.pt")


def test_official_tokenizer_file_is_recognised_by_its_shapes(tmp_path) -> None:
    model = build_tokenizer(tokenizer_preset("tiny").config, with_distill=True)
    path = tmp_path / "official.pt"
    torch.save({"model": model.state_dict(), "steps": 5}, path)
    # The config layer sits below the models, so it says where shape matching lives ...
    with pytest.raises(OfficialCheckpoint, match="does not describe its architecture") as info:
        TokenizerConfig.from_checkpoint(path)
    assert "tokenizer_config_of" in (info.value.hint or "")
    # ... and the tokenizer loader recognises the preset.
    assert tokenizer_config_of(path) == (tokenizer_preset("tiny").config, "tiny")


def _gpt_like(dim: int, n_layer: int) -> dict[str, torch.Tensor]:
    """Official GPT key shapes (docs/ar.md#checkpoints) as stride-0 views, so a GPT-B-shaped file stays tiny."""
    sd = {
        "positional_embedding": ONE.expand(257, dim),
        "cls_embedding.embedding_table.weight": ONE.expand(1001, dim),
        "tok_embeddings.weight": ONE.expand(16384, dim),
    }
    sd.update({f"layers.{i}.attention.wqkv.weight": ONE.expand(3 * dim, dim) for i in range(n_layer)})
    return sd


def test_official_gpt_file_gives_its_size(tmp_path) -> None:
    path = tmp_path / "GPT_B.pt"
    torch.save({"model": _gpt_like(768, 12)}, path)
    cfg = GPTConfig.from_checkpoint(path)
    assert cfg == GPTConfig.from_name("gpt-b")
    torch.save({"model": _gpt_like(64, 2)}, path)
    with pytest.raises(GigatokError, match="no known size"):
        GPTConfig.from_checkpoint(path)
