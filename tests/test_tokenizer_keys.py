"""Every tokenizer preset builds (on the meta device) with the official state_dict, key for key."""

from __future__ import annotations

import json

import pytest
from conftest import fixture_path

from gigatok_core.registry import tokenizer_names, tokenizer_preset
from gigatok_core.tokenizer import build_tokenizer

OFFICIAL = json.loads(fixture_path("tok_state_dict_keys.json").read_text())["presets"]
WITH_OFFICIAL = [n for n in tokenizer_names() if tokenizer_preset(n).official_config]


def test_every_official_config_has_a_preset() -> None:
    mapped = {tokenizer_preset(n).official_config.removesuffix(".yaml") for n in WITH_OFFICIAL}
    assert mapped == set(OFFICIAL)


@pytest.mark.parametrize("name", WITH_OFFICIAL)
def test_state_dict_equals_official(name: str) -> None:
    preset = tokenizer_preset(name)
    ref = OFFICIAL[preset.official_config.removesuffix(".yaml")]
    model = build_tokenizer(preset.config, with_distill=True, device="meta")
    ours = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    theirs = [(k, list(s)) for k, s, _ in ref["keys"]]
    assert len(ours) == ref["num_keys"] == len(theirs)
    assert ours == theirs  # names, shapes and order
    params = dict(model.named_parameters())
    assert sum(p.numel() for p in params.values()) == ref["num_params_total"] == preset.params
    distill = sum(p.numel() for k, p in params.items() if ".distill_mlp." in k)
    assert distill == ref["num_params_distill_mlp"]
    buffers = {k: list(b.shape) for k, b in model.named_buffers()}
    assert buffers == ref["buffers"]


@pytest.mark.parametrize("name", WITH_OFFICIAL)
def test_inference_build_has_no_distill_head(name: str) -> None:
    preset = tokenizer_preset(name)
    ref = OFFICIAL[preset.official_config.removesuffix(".yaml")]
    model = build_tokenizer(preset.config, device="meta")
    assert not any("distill_mlp" in k for k in model.state_dict())
    assert sum(p.numel() for p in model.parameters()) == ref["num_params_inference"]


def test_tiny_preset_builds_small() -> None:
    model = build_tokenizer(tokenizer_preset("tiny").config, with_distill=True, device="meta")
    n = sum(p.numel() for p in model.parameters())
    assert 1_000_000 < n < 10_000_000
    assert model.latent_shape(2) == (2, 8, 1, 256)
