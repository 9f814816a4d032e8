"""Configs: every preset builds its train config; nested overrides; unknown keys; bad values."""

from __future__ import annotations

import dataclasses

import pytest

from gigatok_core import registry
from gigatok_core.config import (
    GPT_SIZES,
    GPTConfig,
    GPTRecipe,
    GPTTrainConfig,
    RunConfig,
    TokenizerConfig,
    TokenizerRecipe,
    TokenizerTrainConfig,
    build_config,
    config_to_dict,
)
from gigatok_core.errors import GigatokError


# ---------------------------------------------------------------------------------------------
# Every registered preset
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", registry.tokenizer_names())
def test_every_tokenizer_preset_builds_its_train_config(name: str) -> None:
    cfg = TokenizerTrainConfig.from_name(name)
    preset = registry.tokenizer_preset(name)
    assert cfg.preset == name
    assert cfg.model == preset.config == TokenizerConfig.from_name(name)
    assert cfg.recipe == preset.recipe
    assert cfg.run == RunConfig()
    # Every field the YAML declares reached the recipe (nothing silently dropped or renamed).
    for key, value in preset.declared["recipe"].items():
        got = getattr(cfg.recipe, key)
        assert (list(got) if isinstance(got, tuple) else got) == value, (name, key)


@pytest.mark.parametrize("name", registry.gpt_names())
def test_every_gpt_preset_builds_its_train_config(name: str) -> None:
    cfg = GPTTrainConfig.from_name(name)
    preset = registry.gpt_preset(name)
    assert cfg.preset == name and cfg.model == preset.config == GPTConfig.from_name(name)
    assert cfg.recipe == preset.recipe
    for key, value in preset.declared["recipe"].items():
        assert getattr(cfg.recipe, key) == value, (name, key)


def test_official_recipe_values() -> None:
    """Spot values from docs/tokenizer.md#sizes-and-presets, docs/recipes.md#loop-and-data, #gpt."""
    tok = TokenizerRecipe()
    assert (tok.lr, tok.end_lr, tok.weight_decay, tok.betas, tok.max_grad_norm) == (
        1e-4,
        1e-5,
        1e-4,
        (0.9, 0.95),
        10.0,
    )
    assert (tok.disc_weight, tok.perceptual_weight, tok.proj_weight, tok.lr_scheduler) == (
        0.5,
        1.0,
        0.5,
        "cosine_v2",
    )
    xl = registry.tokenizer_preset("xl-xxl").recipe
    assert (xl.warmup, xl.aux_loss_end, xl.use_direct_rec_loss, xl.fsdp, xl.precision) == (
        5000,
        0,
        False,
        True,
        "bf16",
    )
    assert registry.tokenizer_preset("b-l-dino").recipe.disc_type == "dinodisc"
    gpt = GPTRecipe()
    assert (gpt.lr, gpt.betas, gpt.weight_decay, gpt.max_grad_norm) == (1e-4, (0.9, 0.95), 0.05, 1.0)
    assert (gpt.lr_scheduler, gpt.fract_decay, gpt.warmup) == ("wsd", 0.2, 5000)
    xxl = registry.gpt_preset("gpt-xxl").recipe
    assert (xxl.global_batch_size, xxl.warmup, xxl.fsdp) == (512, 200, True)


def test_resolved_run_values() -> None:
    # Epochs -> iterations: epochs * 5000 * 256 / batch (docs/recipes.md#loop-and-data).
    assert TokenizerTrainConfig.from_name("b-l").total_steps == 1_000_000
    assert TokenizerTrainConfig.from_name("xl-xxl").total_steps == 1_500_000
    assert GPTTrainConfig.from_name("gpt-xxl").total_steps == 750_000
    cfg = TokenizerTrainConfig.from_name("xl-xxl", overrides=["run.batch_size=512"])
    assert (cfg.batch_size, cfg.total_steps) == (512, 750_000)
    assert (cfg.strategy, cfg.precision, cfg.lr, cfg.ema) == ("fsdp", "bf16", 1e-4, False)
    cfg = TokenizerTrainConfig.from_name(
        "s-s",
        overrides=[
            "run.strategy=fsdp",
            "run.precision=fp32",
            "run.lr=3e-4",
            "run.ema=true",
            "run.max_steps=7",
        ],
    )
    assert (cfg.strategy, cfg.precision, cfg.lr, cfg.ema, cfg.total_steps) == ("fsdp", "fp32", 3e-4, True, 7)


# ---------------------------------------------------------------------------------------------
# Overrides: preset -> file -> dotlist -> keyword mappings
# ---------------------------------------------------------------------------------------------
def test_nested_dotlist_overrides() -> None:
    cfg = TokenizerTrainConfig.from_name(
        "s-s",
        overrides=["recipe.lr=1e-3", "model.codebook_size=1024", "run.max_steps=5", "recipe.betas=[0.5,0.9]"],
    )
    assert cfg.recipe.lr == 1e-3 and cfg.recipe.betas == (0.5, 0.9)
    assert cfg.model.codebook_size == 1024 and cfg.run.max_steps == 5
    # Untouched values keep the preset's, on every level.
    assert cfg.model.encoder_size == "small" and cfg.recipe.global_batch_size == 128 and cfg.run.seed == 0


def test_keyword_overrides_merge_into_nested_configs() -> None:
    cfg = GPTTrainConfig.from_name("gpt-xxl", model={"n_layer": 2}, run={"max_steps": 3})
    # The rest of the preset's model survives, and dim/n_head still come from its size.
    assert (cfg.model.size, cfg.model.dim, cfg.model.n_layer, cfg.model.n_head) == ("gpt-xxl", 1536, 2, 24)
    assert cfg.run.max_steps == 3 and cfg.recipe.global_batch_size == 512


def test_file_layer_then_dotlist(tmp_path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text("preset: tiny\nrecipe:\n  lr: 2.0e-4\n  disc_start: 3\nrun:\n  max_steps: 9\n")
    cfg = TokenizerTrainConfig.from_file(path)
    assert cfg.preset == "tiny" and cfg.model == registry.tokenizer_preset("tiny").config
    assert (cfg.recipe.lr, cfg.recipe.disc_start, cfg.run.max_steps) == (2e-4, 3, 9)
    cfg = TokenizerTrainConfig.from_name("tiny", config_file=path, overrides=["run.max_steps=4"])
    assert (cfg.recipe.lr, cfg.run.max_steps) == (2e-4, 4)


def test_model_config_from_file_and_from_name(tmp_path) -> None:
    path = tmp_path / "gpt.yaml"
    path.write_text("size: gpt-l\nvocab_size: 1024\n")
    cfg = GPTConfig.from_file(path)
    assert (cfg.dim, cfg.n_layer, cfg.n_head, cfg.vocab_size) == (*GPT_SIZES["gpt-l"], 1024)
    # Changing the size re-derives dim/n_layer/n_head (they are not frozen at the preset's values).
    assert GPTConfig.from_name("gpt-b", size="gpt-xl").dim == 1280
    assert TokenizerConfig.from_name("s-s", codebook_size=4096).codebook_size == 4096


def test_config_round_trips_through_a_plain_dict() -> None:
    cfg = GPTTrainConfig.from_name("gpt-tiny", overrides=["recipe.betas=[0.8,0.9]"])
    plain = config_to_dict(cfg)
    assert plain["recipe"]["betas"] == [0.8, 0.9] and plain["model"]["dim"] == 64
    assert build_config(GPTTrainConfig, plain) == cfg


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("override", "unknown", "closest"),
    [
        ("recipe.lrr=1", "recipe.lrr", "'recipe.lr'"),
        ("model.codebok_size=3", "model.codebok_size", "'model.codebook_size'"),
        ("runn.max_steps=1", "runn", "'run'"),
        ("run.max_step=1", "run.max_step", "'run.max_steps'"),
    ],
)
def test_unknown_key_names_the_closest_match(override: str, unknown: str, closest: str) -> None:
    with pytest.raises(GigatokError) as info:
        TokenizerTrainConfig.from_name("s-s", overrides=[override])
    assert f"setting {unknown!r}" in info.value.message
    assert f"did you mean {closest}?" in (info.value.hint or "")


def test_unknown_key_in_a_file_names_the_file(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("recipe:\n  disc_weigth: 0.1\n")
    with pytest.raises(GigatokError, match=r"bad\.yaml") as info:
        TokenizerTrainConfig.from_name("s-s", config_file=path)
    assert "'recipe.disc_weight'" in (info.value.hint or "")


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("recipe.lr=abc", "'recipe.lr'"),
        ("recipe.lr=-1", "lr must be positive"),
        ("recipe.disc_type=stylegan", "disc_type"),
        ("recipe.betas=[0.9,1.5]", "betas"),
        ("recipe.precision=fp8", "precision"),
        ("recipe.end_lr=1.0", "end_lr"),
        ("run.strategy=zero", "run.strategy"),
        ("run.on_nan=ignore", "run.on_nan"),
        ("run.device=tpu", "run.device"),
        ("run.max_steps=0", "run.max_steps"),
        ("model.codebook_size=1", "codebook_size"),
        ("model.encoder_size=huge", "encoder_size"),
    ],
)
def test_bad_values_are_rejected(override: str, match: str) -> None:
    with pytest.raises(GigatokError, match=match):
        TokenizerTrainConfig.from_name("s-s", overrides=[override])


def test_bad_gpt_values_are_rejected() -> None:
    with pytest.raises(GigatokError, match="divisible"):
        GPTConfig.from_name("gpt-b", n_head=5)
    with pytest.raises(GigatokError, match="size"):
        GPTConfig.from_name("gpt-b", size="gpt-z")
    with pytest.raises(GigatokError, match="fract_decay"):
        GPTTrainConfig.from_name("gpt-b", overrides=["recipe.fract_decay=2"])
    with pytest.raises(GigatokError, match="grad_accum"):
        GPTTrainConfig.from_name("gpt-b", overrides=["run.batch_size=10", "run.grad_accum=3"])


def test_malformed_override_and_missing_file(tmp_path) -> None:
    with pytest.raises(GigatokError, match="key=value"):
        TokenizerTrainConfig.from_name("s-s", overrides=["recipe.lr"])
    with pytest.raises(GigatokError, match="does not exist"):
        TokenizerTrainConfig.from_file(tmp_path / "none.yaml")
    with pytest.raises(GigatokError, match="unknown tokenizer preset"):
        TokenizerTrainConfig.from_name("s-q")


def test_recipes_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        TokenizerRecipe().lr = 1.0  # type: ignore[misc]


def test_from_options_is_the_training_commands_grammar(tmp_path) -> None:
    """Preset -> file -> overrides -> run settings one by one (None: not given), the last winning,
    as `gigatok train gpt|tokenizer` takes them; an override a setting replaces is still checked."""
    (tmp_path / "c.yaml").write_text("run:\n  seed: 3\n  log_every: 7\n")
    cfg = GPTTrainConfig.from_options(
        "gpt-tiny",
        config_file=tmp_path / "c.yaml",
        overrides=["run.max_steps=2", "run.log_every=9"],
        max_steps=5,
        lr=None,
        compile=False,
    )
    assert (cfg.run.max_steps, cfg.run.log_every, cfg.run.seed, cfg.run.compile) == (5, 9, 3, False)
    assert cfg.lr == cfg.recipe.lr  # not given: the recipe's
    tok = TokenizerTrainConfig.from_options("tiny", ema=True, batch_size=4, grad_accum=2)
    assert tok.ema and (tok.batch_size, tok.run.grad_accum) == (4, 2)
    with pytest.raises(GigatokError, match="unknown run setting: max_step") as info:
        GPTTrainConfig.from_options("gpt-tiny", max_step=3)
    assert "max_steps" in (info.value.hint or "")
    with pytest.raises(GigatokError, match=r"which 'run\.max_steps=3' replaces"):
        GPTTrainConfig.from_options("gpt-tiny", overrides=["run.max_steps=abc"], max_steps=3)


def test_every_override_is_checked_even_when_a_later_one_replaces_it() -> None:
    """issue 17: an override replaced by a later one of the same key (an option's) is still checked;
    values valid only together with later overrides stay accepted."""
    from gigatok_core.config import GPTTrainConfig, TokenizerTrainConfig

    with pytest.raises(GigatokError, match=r"'run\.max_steps=abc', which 'run\.max_steps=5' replaces"):
        GPTTrainConfig.from_name("gpt-tiny", overrides=["run.max_steps=abc", "run.max_steps=5"])
    with pytest.raises(GigatokError, match=r"run\.max_steps must be positive"):
        TokenizerTrainConfig.from_name("tiny", overrides=["run.max_steps=0", "run.max_steps=5"])
    cfg = GPTTrainConfig.from_name("gpt-tiny", overrides=["model.n_head=3", "model.dim=48", "model.n_head=4"])
    assert (cfg.model.dim, cfg.model.n_head) == (48, 4)


@pytest.mark.parametrize(
    ("kind", "override", "message"),
    [
        ("gpt", "n_layer=0", "n_layer must be positive, got 0"),  # was silently the size's 12 layers
        ("gpt", "dim=0", "dim must be positive"),
        ("gpt", "n_head=-2", "n_head must be positive"),
        ("tok", "encoder_depth=0", "encoder_depth must be positive"),
        ("tok", "decoder_heads=0", "decoder_heads must be positive"),
        ("tok", "z_channels=0", "z_channels must be positive"),
        ("tok", "ch_mult=[1,0,2]", "ch_mult entries must be positive"),
        ("tok", "dropout=1.5", "dropout must be in"),
    ],
)
def test_impossible_models_are_refused(kind: str, override: str, message: str) -> None:
    from gigatok_core.config import GPTTrainConfig, TokenizerTrainConfig

    build = GPTTrainConfig.from_name if kind == "gpt" else TokenizerTrainConfig.from_name
    with pytest.raises(GigatokError, match=message):
        build("gpt-tiny" if kind == "gpt" else "tiny", overrides=[f"model.{override}"])
