"""Helpers of the benchmark scripts that the campaign's records depend on: the learning curve's slope
and the compact CTs that travel to a lent GPU (``benchmarks/gpu_data.py``)."""

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_slope_is_db_per_doubling_of_cpu():
    curve = _load("plot_learning_curve")
    hours = [1.0, 2.0, 4.0, 8.0]
    assert curve.slope_per_doubling(hours, [20.0, 20.5, 21.0, 21.5]) == pytest.approx(0.5)
    assert curve.slope_per_doubling([3.0], [20.0]) is None
    assert curve.slope_per_doubling([2.0, 2.0], [20.0, 21.0]) is None


def test_gpu_days_are_drawn_but_left_out_of_the_slope(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    curve = _load("plot_learning_curve")
    fitted, slope = [], curve.slope_per_doubling
    monkeypatch.setattr(curve, "slope_per_doubling", lambda h, y: fitted.append((list(h), list(y))) or slope(h, y))
    days = [{"day": d, "cpu_hours": h, "seven_ct": {"6": {"dice_dc": p, "dice": p - 1, "sart": 27.0}}}
            for d, h, p in ((1, 1.0, 28.0), (2, 2.0, 28.5), (3, 4.0, 29.0))]
    days.append({"day": 4, "cpu_hours": 4.5, "gpu_hours": 0.08,
                 "seven_ct": {"6": {"dice_dc": 31.0, "dice": 30.0, "sart": 27.0}}})
    (tmp_path / "c.json").write_text(json.dumps({"days": days}))
    assert curve.main(["--data", str(tmp_path / "c.json"), "--out", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").stat().st_size > 10_000
    # one fit (DiCE + DC at 6 views), on the three CPU-only days: the GPU day would have steepened it
    assert fitted == [([1.0, 2.0, 4.0], [28.0, 28.5, 29.0])]
    assert slope(*fitted[0]) == pytest.approx(0.5) and slope([1.0, 2.0, 4.0, 4.5], [28.0, 28.5, 29.0, 31.0]) > 0.6


def _image(spacing, size=(40, 30, 20), value=40.0):
    array = np.full(size[::-1], value, dtype=np.float32)
    array[:, :, :5] = -3024.0          # padding outside the field
    array[:, :, -5:] = 3000.0          # beyond the training window
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin((-10.0, 5.0, 2.0))
    return image


def test_gpu_data_resamples_to_the_minimum_spacing_clips_and_keeps_the_centre():
    compact = _load("gpu_data").compact
    out = compact(_image((1.0, 1.0, 4.0)), 2.0)
    assert out.GetPixelID() == sitk.sitkInt16
    assert out.GetSpacing() == pytest.approx((2.0, 2.0, 4.0))       # finer axes coarsened, the coarse one kept
    assert out.GetSize() == (20, 15, 20)                            # the same extent
    # the grid centre stays: x and y voxel centres move from -10, -9, ... and 5, 6, ... to -9.5, -7.5, ...
    assert out.GetOrigin() == pytest.approx((-9.5, 5.5, 2.0))
    array = sitk.GetArrayFromImage(out)
    assert array.min() == -1024 and array.max() == 1200
    assert np.all(array[:, :, 8:12] == 40)                           # soft tissue far from the edges unchanged


def test_gpu_data_leaves_a_coarse_ct_unresampled():
    compact = _load("gpu_data").compact
    source = _image((3.0, 3.0, 3.0))
    out = compact(source, 2.0)
    assert out.GetSize() == source.GetSize() and out.GetSpacing() == source.GetSpacing()
    expected = np.clip(sitk.GetArrayFromImage(source), -1024, 1200).astype(np.int16)
    assert np.array_equal(sitk.GetArrayFromImage(out), expected)


def test_gpu_data_rounds_to_the_hu_step():
    compact = _load("gpu_data").compact
    source = _image((3.0, 3.0, 3.0))
    array = sitk.GetArrayFromImage(source)
    array[:, :, 10:20] = np.linspace(-900.0, 900.0, 10 * 30 * 20).reshape(20, 30, 10)
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(source)
    out = sitk.GetArrayFromImage(compact(image, 2.0, hu_step=8)).astype(np.float64)
    assert np.all(out % 8 == 0)
    inside = (array > -1024) & (array < 1200)
    assert np.abs(out - array)[inside].max() <= 4.0 and out.min() == -1024 and out.max() == 1200
    # the rounding error of a ramp is uniform: 8 / sqrt(12) = 2.31 HU rms
    assert np.sqrt(np.mean((out - array)[:, :, 10:20] ** 2)) == pytest.approx(8 / np.sqrt(12), rel=0.05)


def test_gpu_data_refuses_bad_names_and_spacings(tmp_path, capsys):
    main = _load("gpu_data").main
    assert main(["--out", str(tmp_path), "chest:x"]) == 2
    assert main(["--out", str(tmp_path), "chest:-1"]) == 2
    assert main(["--out", str(tmp_path), "no_such_sample"]) == 2
    err = capsys.readouterr().err
    assert "positive number of mm" in err and "unknown sample 'no_such_sample'" in err
    for step in ("0", "7", "x"):   # 7 does not divide -1024: air would become -1022 and padding -1024
        with pytest.raises(SystemExit) as exit_:
            main(["--out", str(tmp_path), "--hu-step", step, "chest"])
        assert exit_.value.code == 2 and "--hu-step" in capsys.readouterr().err
    assert "Traceback" not in err and not list(tmp_path.iterdir())


@pytest.mark.parametrize("knob, message", [
    ({"GPU_CONFIG": "bogus"}, "GPU_CONFIG must be bundled, paper or a .json architecture file, got 'bogus'"),
    ({"GPU_CONFIG": "no_such.json"}, "GPU_CONFIG=no_such.json: no such file"),
    ({"TRAIN_MINUTES": "5m"}, "TRAIN_MINUTES must be a whole number >= 1, got '5m'"),
    ({"BATCH": "0"}, "BATCH must be a whole number >= 1, got '0'"),
    ({"TRAIN_STEPS": "lots"}, "TRAIN_STEPS must be a whole number >= 1, got 'lots'"),
    ({"INIT": "no_such.safetensors"}, "INIT=no_such.safetensors: no such model file"),
])
def test_gpu_run_refuses_bad_knobs_before_any_work(tmp_path, knob, message):
    """A typo in a knob must not cost a lent GPU's minutes: one line, exit 2, nothing run."""
    env = {**os.environ, "OUT": str(tmp_path / "out"), "WORK": str(tmp_path / "work"), "DRY": "1", **knob}
    done = subprocess.run(["bash", str(BENCH / "gpu_run.sh")], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith("error: " + message) and done.stderr == ""
    assert os.listdir(tmp_path / "out") == ["summary.txt"] and os.listdir(tmp_path / "work") == []


def _fake_deepsparse(tmp_path, missing=""):
    """A `deepsparse` on PATH whose `samples --fetch NAME` prints `NAME: path` for a file it creates
    (none for ``missing``) and which fails on anything else: a dry run must not call it otherwise."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    fake = bin_ / "deepsparse"
    fake.write_text(f"""#!/bin/bash
[ "$1 $2" = "samples --fetch" ] || {{ echo "unexpected: $*" >&2; exit 9; }}
[ "$3" = "{missing}" ] && exit 0
mkdir -p "{tmp_path}/cache/$3" && touch "{tmp_path}/cache/$3/$3.nii.gz"
echo "$3: {tmp_path}/cache/$3/$3.nii.gz"
""")
    fake.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}", "DRY_RUN": "1"}


def test_campaign_corpus_writes_the_lists_and_names_every_folder(tmp_path):
    env = _fake_deepsparse(tmp_path)
    done = subprocess.run(["bash", str(BENCH / "campaign_corpus.sh"), str(tmp_path / "corpus")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    corpus, cache = tmp_path / "corpus", tmp_path / "cache"
    lists = {p.stem: p.read_text().split() for p in corpus.glob("*.list")}
    want = {"real": ["chest", "lung1", "tptbox"], "heldout": ["lung2", "liver"], "body": ["body"],
            "chest4": ["chest4"], "new3": ["head", "abdomen2", "cta"],
            "heldout2": ["lung2", "liver", "abdomen", "pycerr1", "pycerr2", "pycerr3", "pycerr4"]}
    assert lists == {k: [str(cache / s / f"{s}.nii.gz") for s in v] for k, v in want.items()}
    trained = {s for k in ("real", "body", "chest4", "new3") for s in want[k]}
    assert not trained & set(want["heldout2"])        # no held-out CT is trained on
    assert (corpus / "heldout2_split.txt").read_text().split()[1::2] == [
        "lung2_image", "img_117", "449_CT_4mm", "pycerr1", "pycerr2", "pycerr3", "pycerr4"]
    commands = [line[2:] for line in done.stdout.splitlines() if line.startswith("+ ")]
    outs = [c.split("--out ")[1].split()[0] for c in commands]
    assert outs == [str(corpus / f) for f in ("phantoms", "real", "synth", "heldout", "body", "chest4", "new3",
                                              "heldout2")]
    assert sum("--augment 40" in c for c in commands) == 3 and not (corpus / "real").exists()   # dry: nothing prepared


def test_campaign_corpus_stops_with_one_line_when_a_sample_is_missing(tmp_path):
    env = _fake_deepsparse(tmp_path, missing="pycerr3")
    done = subprocess.run(["bash", str(BENCH / "campaign_corpus.sh"), str(tmp_path / "corpus")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stderr.strip() == "campaign_corpus: no cached file for sample pycerr3"
    assert "+ " not in done.stdout   # nothing run


def test_training_layout_rate_is_the_last_invocations_loop():
    layout = _load("bench_training_layout")
    first = [{"event": "train", "step": s, "elapsed_s": 1.0 * s} for s in (10, 20, 30)]      # 1 s/step
    resumed = [{"event": "train", "step": s, "elapsed_s": 4.0 + 0.5 * (s - 30)} for s in (40, 50, 60, 70)]
    other = [{"event": "validation", "step": 70, "psnr": 20.0}]
    lines = [json.dumps(e) for e in first + resumed + other] + [""]
    sps, steps = layout.loop_rate(lines)
    assert sps == pytest.approx(0.5) and steps == 30          # start-up before step 40 is not counted
    with pytest.raises(ValueError, match="raise --steps"):
        layout.loop_rate([json.dumps(e) for e in first + resumed[:1]])


@pytest.mark.parametrize("text, expected", [("2x1", (2, 1)), ("1X2", (1, 2))])
def test_training_layout_parses_processes_by_threads(text, expected):
    assert _load("bench_training_layout").parse_layout(text) == expected


@pytest.mark.parametrize("text", ["2", "0x2", "axb", "2x1x1"])
def test_training_layout_refuses_a_bad_layout_in_one_line(text):
    with pytest.raises(SystemExit, match="layout|processes"):
        _load("bench_training_layout").parse_layout(text)
