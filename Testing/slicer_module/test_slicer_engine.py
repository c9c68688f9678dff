"""What the module asks of deepsparse_core: command lines, model discovery, dependencies."""

import argparse
import sys
from pathlib import Path

import pytest

from DeepSparseSlicerLib import dependencies, engine
from slicer_helpers import ROOT


def test_the_engine_is_found_and_its_command_line_read():
    caps = engine.capabilities()
    assert {"fdk", "sart"} <= set(caps.methods)
    assert {"--method", "--device", "--units", "--out"} <= set(caps.reconstruct_options)
    assert engine.core_location() == ROOT


def test_presets_samples_and_phantoms_offered_exist_in_the_engine():
    from deepsparse_core.geometry import preset_names
    from deepsparse_core.phantoms import PHANTOM_KINDS
    from deepsparse_core.samples import SAMPLES

    assert engine.preset_names() == preset_names()
    assert engine.sample_names() == list(SAMPLES)
    assert set(engine.PHANTOMS) <= set(PHANTOM_KINDS)


def test_commands_use_the_json_progress_mode_of_this_python():
    cmd = engine.simulate_command("ct.nii", "p.safetensors", 6, 360.0, "fast", noise=False)
    assert cmd[:5] == [sys.executable, "-m", "deepsparse_core", "--progress", "json"]
    assert cmd[5:7] == ["simulate", "ct.nii"] and "--no-noise" in cmd and cmd[cmd.index("--preset") + 1] == "fast"
    from deepsparse_core.cli import build_parser

    build_parser().parse_args(cmd[3:])  # the engine's own parser accepts it
    caps = engine.capabilities()
    recon = engine.reconstruct_command(caps, "p.safetensors", "o.nrrd", "sart", "cpu", "hu", iterations=5)
    build_parser().parse_args(recon[3:])


def _caps_with(train=None, dice=True):
    def options(*names, flag=()):
        parser = argparse.ArgumentParser()
        for n in names:
            parser.add_argument(n)
        for n in flag:
            parser.add_argument(n, action="store_true")
        return {s: a for a in parser._actions for s in a.option_strings}

    recon = options("--method", "--device", "--units", "--out", "--model", "--resolution",
                    flag=("--data-consistency",))
    return engine.Capabilities(("fdk", "sart", "dice") if dice else ("fdk", "sart"), recon,
                               None if train is None else options(*train))


def test_dice_command_passes_model_resolution_and_data_consistency_when_offered():
    caps = _caps_with()
    assert caps.dice and caps.reconstruct_flag("consistency") == "--data-consistency"
    cmd = engine.reconstruct_command(caps, "p.safetensors", "o.nrrd", "dice", "cuda", "hu", model_path="m.safetensors",
                                     resolution=256, data_consistency=True)
    assert cmd[cmd.index("--model") + 1] == "m.safetensors" and cmd[cmd.index("--resolution") + 1] == "256"
    assert "--data-consistency" in cmd
    assert not _caps_with(dice=False).dice


def test_finetune_makes_candidates_then_step1_then_step2_from_the_step1_run(tmp_path):
    from deepsparse_core.errors import DeepSparseError

    args = (["a.nii.gz", "b.nii.gz"], tmp_path, tmp_path / "g.json", 200, 6, 4, 3, "base.safetensors")
    with pytest.raises(DeepSparseError, match="no training command"):
        engine.finetune_commands(_caps_with(), *args)
    with pytest.raises(DeepSparseError, match="lacks --init"):
        engine.finetune_commands(_caps_with(train=("--stage", "--data", "--out", "--views", "--steps")), *args)
    caps = engine.Capabilities(("fdk",), {}, engine._train_options())  # the real training parser
    if caps.train_options is None:
        pytest.skip("deepsparse_core.training is not there yet")
    commands, model = engine.finetune_commands(caps, *args, batch_size=2, device="cpu", points=500)
    cand_a, cand_b, step1, step2 = commands
    value = lambda cmd, opt: cmd[cmd.index(opt) + 1]  # noqa: E731
    assert cand_a[5:7] == ["candidates", "a.nii.gz"] and value(cand_b, "--count") == "200"
    assert value(step1, "--stage") == "step1" and value(step2, "--stage") == "step2"
    assert value(step1, "--data") == value(step2, "--data") == str(Path(value(cand_a, "--out")).parent)
    assert value(step1, "--init") == "base.safetensors" and value(step2, "--init") == value(step1, "--out")
    assert value(step1, "--steps") == "4" and value(step2, "--steps") == "3" and value(step2, "--points") == "500"
    assert model == Path(value(step2, "--out")) / "model.safetensors"
    from deepsparse_core.cli import build_parser
    from deepsparse_core.training.command import add_train_arguments

    build_parser().parse_args(cand_a[3:])
    parser = argparse.ArgumentParser()
    parser.add_argument("--progress")
    add_train_arguments(parser)
    parser.parse_args(step2[3:])  # the training command line accepts what the panel sends


def test_dependencies_match_the_package_requirements():
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    required = {r.split(">")[0].split("<")[0].split("=")[0].strip().lower() for r in project["dependencies"]}
    listed = {r.split(">")[0].split("<")[0].strip().lower() for r in dependencies.REQUIREMENTS.values()}
    assert listed == required


def test_installer_asks_once_and_installs_torch_through_pytorchutils(monkeypatch):
    monkeypatch.setattr(dependencies, "missing", lambda: dict(state["missing"]))
    state = {"missing": {"torch": "torch>=2.1,<3", "yaml": "pyyaml>=6.0"}}
    questions, pip, torch_calls = [], [], []

    def torch_installer():
        torch_calls.append(1)
        state["missing"].pop("torch")
        return object()

    def pip_install(requirements):
        pip.append(requirements)
        state["missing"].pop("yaml")

    installer = dependencies.Installer(lambda q: questions.append(q) or True, pip_install, lambda: torch_installer)
    assert installer.ensure()
    assert len(questions) == 1 and "torch" in questions[0] and "pyyaml" in questions[0]
    assert torch_calls == [1] and pip == ["pyyaml>=6.0"]
    assert installer.ensure() and len(questions) == 1  # nothing missing: no question

    state["missing"] = {"scipy": "scipy>=1.10"}
    declining = dependencies.Installer(lambda q: questions.append(q) and False, pip_install)
    assert not declining.ensure() and not declining.ensure()
    assert len(questions) == 2  # asked once, then remembered


def test_without_the_pytorch_extension_torch_comes_from_pip(monkeypatch):
    monkeypatch.setattr(dependencies, "missing", lambda: {})
    pip = []
    dependencies.install({"torch": "torch>=2.1,<3", "tqdm": "tqdm>=4.60"}, pip.append, None)
    assert pip == ["torch>=2.1,<3 tqdm>=4.60"]
    assert dependencies.pytorchutils_installer() is None  # no PyTorch extension outside Slicer
