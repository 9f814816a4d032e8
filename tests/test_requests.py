"""The typed requests of the non-training commands: checks naming settings (flags in the CLI),
``required_files``, and the one fetch of the launcher's parent. Fast: no model is built."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gigatok_cli.main import app
from gigatok_core.config.requests import (
    ADM_REFERENCE,
    INCEPTION_WEIGHTS,
    VGG_WEIGHTS,
    AuxFile,
    Device,
    ExtractCodesRequest,
    Folder,
    GFIDRequest,
    GPTWeights,
    LocalFile,
    ReconstructRequest,
    RFIDRequest,
    SampleRequest,
    TokenizerWeights,
    ValLossRequest,
)
from gigatok_core.errors import GigatokError, SettingError
from gigatok_core.tasks.fetch import fetch_needs, fetch_required

runner = CliRunner()


@pytest.mark.parametrize(
    ("build", "python", "cli"),
    [
        (
            lambda: SampleRequest("22", num_per_class=0),
            "num_per_class must be at least 1, got 0",
            "--num-per-class",
        ),
        (lambda: SampleRequest("22", seed=-1), "seed must lie in 0 .. 2^63-1", "--seed must lie"),
        (lambda: SampleRequest("22", rng="nope"), "unknown rng 'nope'", "unknown --rng 'nope'"),
        (
            lambda: SampleRequest("22", sampler="sjd", rng="official"),
            "sampler sjd draws from per-sample generators; rng official",
            "--sampler sjd draws from per-sample generators; --rng official",
        ),
        (lambda: GFIDRequest("o", num_samples=999), "num_samples 999 does not split", "--num-samples 999"),
        (
            lambda: GFIDRequest("o", num_samples=2000, num_per_class=3),
            "num_samples 2000 and num_per_class 3 disagree",
            "--num-samples 2000 and --num-per-class 3 disagree",
        ),
        (lambda: GFIDRequest("o", window_grid=True), "window_grid is a search", "--window-grid is a search"),
        (lambda: ExtractCodesRequest("tiny", "o"), "data is required", "--data is required"),
        (
            lambda: ExtractCodesRequest("tiny", "o", data="d", crop_range=0.5),
            "crop_range must",
            "--crop-range",
        ),
        (lambda: ReconstructRequest([], batch_size=1), "no inputs given", "no INPUTS given"),
        (
            lambda: RFIDRequest("tiny", "d", batch_size=0),
            "batch_size must be at least 1",
            "--batch-size must",
        ),
    ],
)
def test_a_bad_setting_is_named_by_setting_in_python_and_by_flag_in_the_cli(
    build, python: str, cli: str
) -> None:
    with pytest.raises(SettingError) as err:
        build()
    assert err.value.message.startswith(python) and "--" not in err.value.message
    assert err.value.for_cli().message.startswith(cli)


def test_the_hint_names_flags_too_and_the_error_survives_pickling() -> None:
    with pytest.raises(SettingError) as err:
        GFIDRequest("o", window_grid=True)
    assert err.value.hint == "use it with search cfg_schedule rectangular"
    assert err.value.for_cli().hint == "use it with --search --cfg-schedule rectangular"
    again = pickle.loads(pickle.dumps(err.value))  # ranks exchange errors as pickles
    assert (again.message, again.hint) == (err.value.message, err.value.hint)
    assert again.for_cli().message == "--window-grid is a search over rectangular windows"


def test_braces_in_a_users_value_are_kept(tmp_path: Path) -> None:
    odd = tmp_path / "{data}" / "{x}"
    with pytest.raises(SettingError) as err:
        fetch_required(ValLossRequest(odd, gpt="gpt-tiny", device="cpu"))
    assert err.value.message == f"data {odd} is not a folder"
    assert err.value.for_cli().message == f"--data {odd} is not a folder"


def test_the_cli_prints_the_flag(tmp_path: Path) -> None:
    res = runner.invoke(
        app, ["eval", "gfid", "--output", str(tmp_path / "o"), "--gpt", "gpt-tiny", "--num-samples", "999"]
    )
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "--num-samples 999 does not split evenly over 1000 classes" in " ".join(res.output.split())
    assert not (tmp_path / "o").exists()


def test_required_files_list_what_each_run_reads(tmp_path: Path) -> None:
    sample = SampleRequest("22,388", gpt="gpt-b", device="cpu")
    assert sample.required_files() == (
        Device("cpu", "fp32"),
        GPTWeights("gpt-b", None, None, None, "22,388"),
    )
    recon = ReconstructRequest(["a.png"], metrics=True, vgg_weights=tmp_path / "vgg.pth")
    assert recon.required_files()[1:] == (
        TokenizerWeights("s-s", None),  # the default tokenizer
        AuxFile(VGG_WEIGHTS, tmp_path / "vgg.pth", "vgg_weights"),
    )
    rfid = RFIDRequest("s-b", "val", lpips=False)
    assert [n.name for n in rfid.required_files() if isinstance(n, AuxFile)] == [INCEPTION_WEIGHTS]
    assert LocalFile(None, "reference") in rfid.required_files()
    gfid = GFIDRequest("o", gpt="gpt-b")
    assert [n.name for n in gfid.required_files() if isinstance(n, AuxFile)] == [
        INCEPTION_WEIGHTS,
        ADM_REFERENCE,
    ]
    assert (
        Folder("val", "data", "pass the ImageNet val ImageFolder tree")
        in ValLossRequest("val").required_files()
    )
    codes = ExtractCodesRequest("tiny", "o", import_official=tmp_path)
    assert codes.required_files()[1] == Folder(
        tmp_path, "import_official", "check the {import_official} path"
    )


def test_fetch_checks_local_files_and_fetches_nothing_for_random_presets(tmp_path: Path) -> None:
    # tiny presets have seeded random weights: nothing to download, and no network is touched
    assert fetch_required(SampleRequest("22", gpt="gpt-tiny", device="cpu")) == []
    with pytest.raises(GigatokError, match="unknown ImageNet class"):
        fetch_required(SampleRequest("no such class", gpt="gpt-tiny", device="cpu"))
    with pytest.raises(SettingError) as err:
        fetch_required(RFIDRequest("tiny", tmp_path, reference=tmp_path / "ref.npz", device="cpu"))
    assert err.value.for_cli().hint == "check the --reference path"
    with pytest.raises(SettingError) as err:
        fetch_required(ValLossRequest(tmp_path / "missing", gpt="gpt-tiny", device="cpu"))
    assert err.value.for_cli().message == f"--data {tmp_path / 'missing'} is not a folder"
    with pytest.raises(GigatokError, match="not supported"):
        fetch_needs([Device("meta")])
    local = tmp_path / "inception.pth"
    local.write_bytes(b"x")
    assert (
        fetch_needs([AuxFile(INCEPTION_WEIGHTS, local, "inception_weights")]) == []
    )  # a local file: used as is


def test_settings_and_request_round_trip() -> None:
    req = SampleRequest([22, 388], output=Path("out"), gpt="gpt-tiny")
    d = req.to_dict()
    assert d["output"] == "out" and d["classes"] == [22, 388] and d["gpt"] == "gpt-tiny"
    assert SampleRequest(**d).to_dict() == d
    assert SampleRequest.flags()["num_per_class"] == "--num-per-class"
    # a setting's meaning names other settings as Python does, or by the names given (the CLI's flags)
    assert "needs rng per-sample" in SampleRequest.help()["sampler"]
    assert "needs --rng per-sample" in SampleRequest.help(SampleRequest.flags())["sampler"]
    assert (
        RFIDRequest.flags()["with_precision_recall"] == "--precision-recall"
        and RFIDRequest.flags()["json_path"] == "--json"
    )


def test_every_request_command_declares_only_settings_of_its_request() -> None:
    import dataclasses

    import typer.main

    from gigatok_cli.launch import LAUNCH_HELP
    from gigatok_core.config import requests

    def commands(group):  # (name, click command) of every command in the click tree
        for name, cmd in getattr(group, "commands", {}).items():
            yield from commands(cmd) if hasattr(cmd, "commands") else [(name, cmd)]

    seen = {}
    for name, cmd in commands(typer.main.get_command(app)):
        request = getattr(cmd.callback, "request_name", None)
        if request:
            fields = {f.name for f in dataclasses.fields(getattr(requests, request))}
            params = {p.name for p in cmd.params} - set(LAUNCH_HELP) - {"_launch_context"}
            if name in ("gpt", "tokenizer"):  # the run settings (--max-steps ...) are RunConfig's
                from gigatok_core.config import RunConfig

                params -= {f.name for f in dataclasses.fields(RunConfig)}
            assert params == fields, (name, params ^ fields)
            cls = getattr(requests, request)
            texts = cls.help(cls.flags())  # each option's help is the library's meaning of its setting
            for p in cmd.params:
                if p.name in fields:
                    assert texts[p.name] and (p.help or "").startswith(texts[p.name]), (name, p.name)
            seen[name] = request
    assert seen == {
        "sample": "SampleRequest",
        "reconstruct": "ReconstructRequest",
        "fid": "FIDRequest",
        "build-ref": "BuildRefRequest",
        "rfid": "RFIDRequest",
        "gfid": "GFIDRequest",
        "val-loss": "ValLossRequest",
        "extract-codes": "ExtractCodesRequest",
        "gpt": "GPTTrainRequest",
        "tokenizer": "TokenizerTrainRequest",
        "export": "ExportRequest",
    }
