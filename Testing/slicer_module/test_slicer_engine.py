"""What the module asks of deepsparse_core: command lines, model discovery, dependencies."""

import argparse
import sys
from pathlib import Path

import pytest
from slicer_helpers import ROOT

from DeepSparseSlicerLib import dependencies, engine


def test_the_engine_is_found_next_to_the_module():
    assert engine.core_location() == ROOT
    assert str(engine.MODULE_DIR) in engine.job_paths() and str(ROOT) in engine.job_paths()


def test_presets_samples_and_phantoms_offered_exist_in_the_engine():
    from deepsparse_core.data.phantoms import PHANTOM_KINDS
    from deepsparse_core.data.samples import SAMPLES
    from deepsparse_core.physics.geometry import preset_names

    assert engine.preset_names() == preset_names()
    assert engine.sample_names() == list(SAMPLES)
    assert set(engine.PHANTOMS) <= set(PHANTOM_KINDS)


def _every_command(tmp_path):
    """Every command line engine.py builds, over its options (issue 10: each must parse)."""
    commands = [engine.simulate_command("ct.nii", "p.safetensors", 6, 360.0, "fast", noise=False),
                engine.simulate_command("ct.nii", "p.safetensors", 8, 180.0, None, "g.json", True, 5e4, 3, "cpu"),
                engine.sample_command("chest")]
    for method in ("fdk", "sart", "dice"):
        for resolution in (None, (40, 64, 64)):
            for k in (None, 0, 5):
                for model in (None, "m.safetensors"):
                    commands.append(engine.reconstruct_command("p.safetensors", "o.nrrd", method, "cpu", "hu",
                                                               model, 7, resolution, k))
    commands += _import_commands()
    finetune, _ = engine.finetune_commands(tmp_path / "cts", tmp_path, tmp_path / "g.json", 24, 6, 4,
                                           "base.safetensors", 2, "cpu", 500)
    finetune_default, _ = engine.finetune_commands("cts", tmp_path, "g.json", 200, 8, 1, "b.safetensors")
    return commands + finetune + finetune_default


def _import_commands():
    """``import`` over its value modes and options (what the panel's Import section can ask)."""
    commands = []
    for values, extra in (("line-integrals", {}), ("flat-dark", {"flat_path": "flat.mha"}),
                          ("flat-dark", {"flat_path": "flat.mha", "dark": "dark.mha"}), ("i0", {"i0": 4000.0}),
                          ("i0", {"i0": 65535.0, "dark": 100.0})):
        commands.append(engine.import_command("proj.mha", "geometry.xml", "p.safetensors", values, **extra))
    commands += [engine.import_command("folder", "g.yaml", "p.safetensors", "line-integrals", n_views=6,
                                       arc_degrees=180.0, pixel_spacing=0.4, detector_like="fast"),
                 engine.import_command("proj.mha", "g.xml", "p.safetensors", "i0", i0=1e4, view_indices="0-360:60"),
                 engine.import_command("proj.mha", "g.xml", "p.safetensors", "line-integrals", n_views=0,
                                       arc_degrees=0.0, pixel_spacing=0.0, detector_like=None)]
    return commands


def test_every_command_line_parses_with_the_engine_parsers(tmp_path):
    from deepsparse_core.cli import build_parser
    from deepsparse_core.training.command import add_train_arguments

    core, train = build_parser(), argparse.ArgumentParser()
    train.add_argument("--progress")
    add_train_arguments(train)
    commands = _every_command(tmp_path)
    assert len(commands) > 40
    for cmd in commands:
        assert cmd[0] == sys.executable
        if cmd[1:3] == ["-m", "deepsparse_core"]:
            assert cmd[3:5] == ["--progress", "json"]
            args = core.parse_args(cmd[3:])
            if args.func.__name__ == "cmd_reconstruct" and "--data-consistency" in cmd:
                assert args.data_consistency == int(cmd[cmd.index("--data-consistency") + 1])
        else:
            assert cmd[1:3] == ["-m", "deepsparse_core.training"], cmd
            train.parse_args(cmd[3:])


def test_import_command_values_parse_to_the_import_options():
    from deepsparse_core.cli import build_parser

    parse = lambda cmd: build_parser().parse_args(cmd[3:])  # noqa: E731
    li = parse(engine.import_command("proj.mha", "g.xml", "p.safetensors", "line-integrals", n_views=6,
                                     arc_degrees=180.0, detector_like="fast"))
    assert li.func.__name__ == "cmd_import" and li.projections == "proj.mha" and li.geometry == "g.xml"
    assert li.line_integrals and li.flat is None and li.i0 is None and li.dark is None
    assert (li.views, li.arc, li.detector_like, li.view_indices, li.pixel_spacing) == (6, 180.0, "fast", None, None)
    flat = parse(engine.import_command("proj.mha", "g.xml", "p.safetensors", "flat-dark", flat_path="f.mha",
                                       dark="d.mha", pixel_spacing=0.4))
    assert not flat.line_integrals and (flat.flat, flat.dark, flat.pixel_spacing) == ("f.mha", "d.mha", [0.4])
    i0 = parse(engine.import_command("proj.mha", "g.xml", "p.safetensors", "i0", i0=4000.0, dark=100.0,
                                     view_indices="0,45,90"))
    assert (i0.i0, i0.dark, i0.view_indices, i0.views, i0.flat) == (4000.0, 100.0, "0,45,90", None, None)
    plain = parse(engine.import_command("proj.mha", "g.xml", "p.safetensors", "line-integrals", n_views=0,
                                        arc_degrees=0.0, pixel_spacing=0.0))  # 0: the engine's defaults
    assert (plain.views, plain.arc, plain.pixel_spacing, plain.detector_like) == (None, None, None, None)
    with pytest.raises(ValueError, match="values must be one of"):
        engine.import_command("proj.mha", "g.xml", "p.safetensors", "intensities")


def test_reconstruct_command_values():
    value = lambda cmd, opt: cmd[cmd.index(opt) + 1]  # noqa: E731
    dice = engine.reconstruct_command("p.safetensors", "o.nrrd", "dice", "cuda", "hu", "m.safetensors",
                                      resolution=(128, 256, 256), data_consistency=5)
    assert value(dice, "--model") == "m.safetensors" and value(dice, "--data-consistency") == "5"
    assert dice[dice.index("--resolution") + 1:][:3] == ["128", "256", "256"]
    bundled = engine.reconstruct_command("p.safetensors", "o.nrrd", "dice", "cpu", "hu")
    assert "--model" not in bundled and "--data-consistency" not in bundled  # the engine's defaults
    off = engine.reconstruct_command("p.safetensors", "o.nrrd", "dice", "cpu", "hu", data_consistency=0)
    assert value(off, "--data-consistency") == "0"
    fdk = engine.reconstruct_command("p.safetensors", "o.nrrd", "fdk", "cpu", "hu", resolution=(2, 3, 4))
    assert "--resolution" in fdk and "--model" not in fdk and "--data-consistency" not in fdk


def test_output_grid_keeps_the_aspect_ratio_along_the_longest_axis():
    assert engine.output_grid((64, 128, 128), 0) is None
    assert engine.output_grid((64, 128, 128), 256) == (128, 256, 256)
    assert engine.output_grid((128, 128, 128), 40) == (40, 40, 40)
    assert engine.output_grid((4, 128, 128), 16) == (2, 16, 16)  # the engine needs >= 2


def test_finetune_prepares_every_piece_then_adapts_the_base_at_a_low_rate_with_its_statistics(tmp_path):
    commands, model = engine.finetune_commands("cts", tmp_path, tmp_path / "g.json", 200, 6, 4,
                                               "base.safetensors", batch_size=2, device="cpu", points=500)
    prepare, adapt = commands
    value = lambda cmd, opt: cmd[cmd.index(opt) + 1]  # noqa: E731
    assert prepare[5:7] == ["prepare", "cts"] and value(prepare, "--candidates") == "200"
    assert prepare[prepare.index("--splits") + 1:][:3] == ["1", "0", "0"]  # all for training
    assert value(adapt, "--stage") == "scratch" and value(adapt, "--views") == "6"
    assert value(adapt, "--data") == value(prepare, "--out") and value(adapt, "--init") == "base.safetensors"
    assert "--freeze-norm" in adapt and float(value(adapt, "--lr")) == 2e-5  # measured, docs/slicer.md
    assert value(adapt, "--steps") == "4" and value(adapt, "--points") == "500"
    assert value(adapt, "--val-every") == "0"
    assert model == Path(value(adapt, "--out")) / "model.safetensors"


def test_models_come_from_the_engine_lookup_one_file_may_serve_several_view_counts(monkeypatch, tmp_path):
    from deepsparse_core import inference
    from deepsparse_core.model import DiCE, DiceConfig
    from deepsparse_core.model.model_file import save_model

    shared = save_model(tmp_path / "dice_range.safetensors", DiCE(DiceConfig.tiny()))
    six = save_model(tmp_path / "dice_6.safetensors", DiCE(DiceConfig.tiny()), n_views=6)
    lookup = {6: six, 8: shared, 9: shared, 10: shared}
    monkeypatch.setattr(inference, "bundled_view_counts", lambda: sorted(lookup))
    monkeypatch.setattr(inference, "bundled_model_path", lambda n: lookup.get(n))
    models = {m.path: m for m in engine.bundled_models()}
    assert models[six].view_counts == (6,) and models[six].label == "DiCE (bundled, 6 views)"
    assert models[shared].view_counts == (8, 9, 10) and models[shared].label == "DiCE (bundled, 8-10 views)"
    found = engine.catalog(tmp_path / "no such folder")
    assert {m["path"] for m in found["models"]} == {str(six), str(shared)}
    assert found["devices"]["cpu"] == {"device": "cpu"} and found["torch"]


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
    assert len(questions) == 3 and "asked again" in declining.message  # a "no" holds for one action only


def test_a_failing_pip_is_a_message_and_the_wait_is_shown(monkeypatch):
    """Issue 18, item 10: pip's CalledProcessError becomes a message for the panel (not "Unexpected
    error: Command ..."), and the installation runs inside the panel's busy indicator."""
    import subprocess

    monkeypatch.setattr(dependencies, "missing", lambda: {"scipy": "scipy>=1.10"})
    shown = []

    def pip_install(requirements):
        raise subprocess.CalledProcessError(1, ["python", "-m", "pip", "install", requirements])

    import contextlib

    @contextlib.contextmanager
    def busy(text):
        shown.append(("start", text))
        try:
            yield
        finally:
            shown.append(("end", text))

    installer = dependencies.Installer(lambda q: True, pip_install, lambda: None, busy=busy)
    assert not installer.ensure()
    assert installer.message == ("installing scipy>=1.10 failed (exit status 1); pip's output is in the "
                                 "Python console log")
    assert [s for s, _ in shown] == ["start", "end"] and "several minutes" in shown[0][1]


def test_without_the_pytorch_extension_torch_is_not_pip_installed(monkeypatch):
    pip, questions = [], []
    with pytest.raises(RuntimeError, match="PyTorch extension"):
        dependencies.install({"torch": "torch>=2.1,<3", "tqdm": "tqdm>=4.60"}, pip.append, None)
    assert pip == []
    assert dependencies.pytorchutils_installer() is None  # no PyTorch extension outside Slicer
    monkeypatch.setattr(dependencies, "missing", lambda: {"torch": "torch>=2.1,<3"})
    installer = dependencies.Installer(lambda q: questions.append(q) or True, pip.append, lambda: None)
    assert not installer.ensure()
    assert "Install the PyTorch extension from the Extensions Manager" in installer.message
    assert questions == [] and pip == []


def test_an_intel_mac_with_numpy_2_is_refused_with_a_message(monkeypatch):
    """Issue 18, item 11: Slicer 5.10+ ships NumPy 2; PyTorch's last Intel-Mac wheels (2.2) need
    NumPy 1. The module says so instead of failing in torch.from_numpy (or downgrading Slicer's NumPy)."""
    problem = dependencies.platform_problem
    monkeypatch.setattr(dependencies, "installed_version", lambda req: {"numpy": "2.2.6"}.get(
        dependencies.requirement_name(req)))                                 # torch not installed yet
    assert "Intel Mac" in problem("Darwin", "x86_64", "2.0.2", None)
    assert "NumPy 2.1.3" in problem("Darwin", "x86_64", "2.1.3", "2.2.2")
    assert problem("Darwin", "x86_64", "1.26.4", "2.2.2") is None           # Slicer 5.8
    assert problem("Darwin", "arm64", "2.1.3", "2.5.1") is None             # Apple silicon
    assert problem("Darwin", "x86_64", "2.1.3", "2.5.1") is None            # a torch that knows NumPy 2
    assert problem("Linux", "x86_64", "2.1.3", "2.2.2") is None and problem("Windows", "AMD64", "2.1.3", None) is None
    asked, pip = [], []
    monkeypatch.setattr(dependencies.platform, "system", lambda: "Darwin")
    monkeypatch.setattr(dependencies.platform, "machine", lambda: "x86_64")
    installer = dependencies.Installer(asked.append, pip.append, lambda: None)
    assert not installer.ensure() and "Intel Mac" in installer.message and asked == [] and pip == []


def test_versions_are_checked_against_the_range(monkeypatch):
    assert dependencies.in_range("2.13.0+cpu", "torch>=2.1,<3")
    assert not dependencies.in_range("2.0.1", "torch>=2.1,<3")
    assert not dependencies.in_range("3.0.0", "torch>=2.1,<3")
    assert dependencies.in_range("2.1.0rc1", "torch>=2.1")
    assert dependencies.in_range("1.24", "numpy>=1.24") and not dependencies.in_range("1.23.5", "numpy>=1.24")
    versions = {"torch": "2.0.1"}
    monkeypatch.setattr(dependencies, "installed_version", lambda req: versions.get(dependencies.requirement_name(req), "99"))
    assert dependencies.missing() == {"torch": "torch>=2.1,<3"}  # installed, but too old
    assert "installed 2.0.1, needs torch>=2.1,<3" in dependencies.question(dependencies.missing())
