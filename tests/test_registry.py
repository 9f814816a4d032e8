from __future__ import annotations

import pytest

from gigatok_core import registry
from gigatok_core.config import GPTConfig, TokenizerConfig, build_config
from gigatok_core.errors import GigatokError


def test_every_preset_loads_and_validates() -> None:
    for name in registry.tokenizer_names():
        preset = registry.tokenizer_preset(name)
        assert isinstance(preset.config, TokenizerConfig)
    for name in registry.gpt_names():
        assert isinstance(registry.gpt_preset(name).config, GPTConfig)
    # every release names weights, a GPT and a tokenizer that exist
    for name in registry.release_names():
        rel = registry.gpt_release(name)
        assert rel.weights_record.kind == "gpt"
        assert registry.tokenizer_preset(rel.tokenizer).weights_record is not None


def test_released_presets_match_paper_table() -> None:
    released = {n for n in registry.tokenizer_names() if registry.tokenizer_preset(n).weights}
    assert released == {"s-s", "s-b", "b-l", "b-l-dino", "xl-xxl", "s-s-2d", "s-b-2d", "b-l-2d"}
    assert registry.tokenizer_preset("xl-xxl").paper == {"rfid": 0.79, "lpips": 0.1947}
    assert len(registry.release_names()) == 8


def test_official_files_come_from_the_hub_then_drive() -> None:
    """Every official checkpoint lists the Hub repository first under its release file name; the
    2D tokenizers have records, and the one with no known Drive id says so."""
    for key in registry.weights_names():
        rec = registry.weights_record(key)
        if rec.kind == "aux":
            continue
        assert rec.sources[0] == f"hf://YuuTennYi/GigaTok/{rec.file}"
        assert [s.split("://")[0] for s in rec.sources[1:]] == ([] if rec.unconfirmed else ["gdrive"])
    drive = {
        n: registry.weights_record(registry.tokenizer_preset(n).weights).sources for n in ("s-s-2d", "s-b-2d")
    }
    assert drive["s-s-2d"][1] == "gdrive://1vrnm5kI67cCCL_F-dGUeO3dJyBDYG6YV"
    assert drive["s-b-2d"][1] == "gdrive://1VJG2j7-QmFo6jss8PrgeksLsMFJGIotw"
    assert registry.weights_record(registry.tokenizer_preset("b-l-2d").weights).unconfirmed
    assert registry.tokenizer_preset("b-l-2d").paper == {"rfid": 0.86}


def test_unknown_name_suggests_closest() -> None:
    with pytest.raises(GigatokError) as err:
        registry.tokenizer_preset("xl-xx")
    assert "did you mean 'xl-xxl'" in (err.value.hint or "")
    assert "s-s" in (err.value.hint or "")


def test_paper_pairing_and_unreleased_pair() -> None:
    assert registry.resolve_pair("gpt-xxl", None)[0] == "xl-xxl"
    assert registry.resolve_pair("gpt-xl", None)[0] == "b-l"
    tok, rel = registry.resolve_pair("gpt-xl", "s-s")
    assert tok == "s-s" and rel is None


def test_overrides_and_unknown_keys() -> None:
    cfg = build_config(TokenizerConfig, {"encoder_size": "base"}, overrides=["decoder_size=large"])
    assert cfg.vit_shape("encoder") == (768, 12, 12) and cfg.vit_shape("decoder") == (1024, 24, 16)
    with pytest.raises(GigatokError, match="unknown TokenizerConfig setting 'no_such_key'"):
        build_config(TokenizerConfig, overrides=["no_such_key=1"])
    with pytest.raises(GigatokError, match="encoder_size"):
        build_config(TokenizerConfig, overrides=["encoder_size=huge"])


def test_gpt_ffn_rule_matches_spec() -> None:
    expect = {"gpt-b": 2048, "gpt-l": 2816, "gpt-xl": 3584, "gpt-xxl": 4096, "gpt-3b": 8704}
    for name, hidden in expect.items():
        assert registry.gpt_preset(name).config.ffn_hidden == hidden
