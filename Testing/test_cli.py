"""The deepsparse command line: simulate -> reconstruct -> evaluate, JSON progress, bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from deepsparse_core.cli import main
from deepsparse_core.data.phantoms import phantom_volume
from deepsparse_core.data.volume_io import read_volume, write_volume
from deepsparse_core.physics.geometry import Geometry


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    write_volume(phantom_volume("chest", (40, 64, 64), spacing=(6.0, 6.0, 6.0), seed=2), d / "ct.nii.gz")
    g = Geometry.preset("fast", 6).with_grid((32, 32, 32))
    g = Geometry(**{**g.to_dict(), "detector_shape": (48, 48), "detector_spacing": (12.8, 12.8)})
    g.save(d / "geometry.yaml")
    return d


def run(*args):
    return main([str(a) for a in args])


def test_simulate_reconstruct_evaluate(workspace, capsys):
    d = workspace
    assert run("simulate", d / "ct.nii.gz", "--views", 6, "--geometry", d / "geometry.yaml", "--seed", 1,
               "--out", d / "p.safetensors", "--reference-out", d / "gt.nii.gz", "--device", "cpu") == 0
    for method, options in (("fdk", []), ("sart", ["--iterations", 5])):
        assert run("--progress", "none", "reconstruct", d / "p.safetensors", "--method", method, *options,
                   "--device", "cpu", "--out", d / f"{method}.nrrd") == 0
    gt, rec = read_volume(d / "gt.nii.gz", check_hu=False), read_volume(d / "fdk.nrrd", check_hu=False)
    assert rec.shape == gt.shape == (32, 32, 32)
    assert np.allclose(rec.spacing, gt.spacing) and np.allclose(rec.origin, gt.origin, atol=1e-4)
    capsys.readouterr()
    scores = {}
    for method in ("fdk", "sart"):
        assert run("evaluate", "--reference", d / "gt.nii.gz", "--reconstruction", d / f"{method}.nrrd",
                   "--json", d / f"{method}.json") == 0
        scores[method] = json.loads((d / f"{method}.json").read_text())
    assert scores["sart"]["psnr"] > scores["fdk"]["psnr"] > 10
    out = capsys.readouterr().out.splitlines()  # the demo's format
    assert out[-1] == f"PSNR {scores['sart']['psnr']:.2f} dB  SSIM {scores['sart']['ssim']:.3f}" + \
        (f"  VIF {scores['sart']['vif']:.3f}" if scores["sart"]["vif"] is not None else "")


def test_evaluate_another_grid_needs_resample(workspace, tmp_path, capsys):
    """Issue 17: a reconstruction on another grid is refused, or resampled onto the reference's grid
    in patient space with --resample. The reference itself at half resolution scores high; shifted by
    a whole 32 mm it scores low (so the resampling follows the origin)."""
    import SimpleITK as sitk

    from deepsparse_core.data.volume import Volume

    d = workspace
    ref = read_volume(d / "ct.nii.gz")
    image = ref.to_sitk()
    half = sitk.Resample(image, [n // 2 for n in image.GetSize()], sitk.Transform(), sitk.sitkLinear,
                         image.GetOrigin(), [s * 2 for s in image.GetSpacing()], image.GetDirection(), -1000.0)
    write_volume(Volume.from_sitk(half), tmp_path / "half.nii.gz")
    shifted = Volume(ref.array, ref.spacing, tuple(np.asarray(ref.origin) + [32.0, 0.0, 0.0]), ref.direction)
    write_volume(shifted, tmp_path / "shifted.nii.gz")
    capsys.readouterr()
    args = ["evaluate", "--reference", d / "ct.nii.gz", "--reconstruction"]
    assert run(*args, tmp_path / "half.nii.gz") == 2
    assert "--resample" in capsys.readouterr().err
    assert run(*args, tmp_path / "half.nii.gz", "--resample", "--json", tmp_path / "half.json") == 0
    assert "(reconstruction resampled to the reference grid)" in capsys.readouterr().out
    assert run(*args, tmp_path / "shifted.nii.gz", "--resample", "--json", tmp_path / "shifted.json") == 0
    half_psnr = json.loads((tmp_path / "half.json").read_text())["psnr"]
    shifted_psnr = json.loads((tmp_path / "shifted.json").read_text())["psnr"]
    assert half_psnr > 25.0 and shifted_psnr < half_psnr - 8.0


def test_reconstruction_in_hu_overlays_the_input_ct(workspace):
    d = workspace
    run("simulate", d / "ct.nii.gz", "--views", 6, "--geometry", d / "geometry.yaml", "--no-noise",
        "--out", d / "q.safetensors", "--reference-out", d / "q_gt.nii.gz", "--device", "cpu")
    assert run("--progress", "none", "reconstruct", d / "q.safetensors", "--method", "fdk", "--units", "hu",
               "--device", "cpu", "--out", d / "hu.nii.gz") == 0
    ct, hu = read_volume(d / "ct.nii.gz"), read_volume(d / "hu.nii.gz")
    assert hu.array.min() >= -1000.5 and hu.array.max() <= 1000.5
    # the reconstruction grid is centred on the CT, up to half a grid voxel of integer cropping
    assert np.allclose(hu.centre_lps, ct.centre_lps, atol=max(hu.spacing) / 2 + 1e-3)
    # and it really overlays it: the reference written with the projections equals the input CT
    # resampled at the reference's voxel centres (physical placement), not a shifted copy of it
    gt = read_volume(d / "q_gt.nii.gz", check_hu=False)
    assert np.allclose(gt.origin, hu.origin, atol=1e-4)
    resampled = sitk.GetArrayFromImage(sitk.Resample(ct.to_sitk(), gt.to_sitk(), sitk.Transform(), sitk.sitkLinear,
                                                     -1000.0))
    expected = np.clip((resampled + 1000) / 2000, 0, 1)
    err = np.abs(gt.array - expected).mean()
    shifted = np.abs(np.roll(gt.array, 1, axis=2) - expected).mean()
    assert err < 0.02 and err < shifted / 2


def test_json_progress_lines(workspace, capsys):
    d = workspace
    run("simulate", d / "ct.nii.gz", "--views", 6, "--geometry", d / "geometry.yaml", "--out", d / "j.safetensors",
        "--device", "cpu")
    capsys.readouterr()
    assert run("--progress", "json", "reconstruct", d / "j.safetensors", "--method", "sart", "--iterations", 3,
               "--device", "cpu", "--out", d / "j.nii.gz") == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    progress = [e for e in events if e["event"] == "progress"]
    assert [e["done"] for e in progress] == [1, 2, 3] and progress[-1]["total"] == 3
    assert events[-1]["event"] == "result" and events[-1]["volume"].endswith("j.nii.gz")


@pytest.mark.parametrize("make, match", [
    (lambda d: d / "missing.nii.gz", "not found|does not exist"),
    (lambda d: (d / "text.nii.gz").write_text("hello") and d / "text.nii.gz", "cannot read|not an image|unreadable"),
])
def test_bad_ct_input_is_one_line_error(workspace, tmp_path, capsys, make, match):
    path = make(tmp_path)
    assert run("simulate", path, "--views", 6, "--geometry", workspace / "geometry.yaml",
               "--out", tmp_path / "p.safetensors") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1
    assert not (tmp_path / "p.safetensors").exists()


def test_2d_image_is_rejected(tmp_path, capsys):
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((16, 16), np.float32)), str(tmp_path / "flat.nii.gz"))
    assert run("simulate", tmp_path / "flat.nii.gz", "--views", 6, "--out", tmp_path / "p.safetensors") == 2
    assert "3D" in capsys.readouterr().err


def test_bad_output_names_and_devices(workspace, tmp_path, capsys):
    d = workspace
    run("simulate", d / "ct.nii.gz", "--views", 6, "--geometry", d / "geometry.yaml", "--out", d / "b.safetensors",
        "--device", "cpu")
    assert run("reconstruct", d / "b.safetensors", "--out", tmp_path / "x.png") == 2
    assert not (tmp_path / "x.png").exists()
    assert run("simulate", d / "ct.nii.gz", "--views", 6, "--out", tmp_path / "p.npz") == 2
    if not __import__("torch").cuda.is_available():
        assert run("reconstruct", d / "b.safetensors", "--device", "cuda", "--out", tmp_path / "y.nii.gz") == 2
        assert "no CUDA GPU" in capsys.readouterr().err
    assert run("reconstruct", tmp_path / "nothing.safetensors", "--out", tmp_path / "z.nii.gz") == 2
    assert run("simulate", d / "ct.nii.gz", "--views", 0, "--out", tmp_path / "p.safetensors") == 2


def test_module_entry_point_and_exit_status(tmp_path):
    out = subprocess.run([sys.executable, "-m", "deepsparse_core", "reconstruct", str(tmp_path / "none.safetensors"),
                          "--out", str(tmp_path / "v.nii.gz")], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.startswith("error: ") and "Traceback" not in out.stderr


def test_demo_writes_volumes_metrics_and_figure(tmp_path):
    """The README's main job, on a phantom CT instead of the fetched sample (same code path)."""
    import csv

    from PIL import Image

    from deepsparse_core.demo import run_demo

    write_volume(phantom_volume("chest", (40, 64, 64), spacing=(6.0, 6.0, 6.0), seed=5), tmp_path / "ct.nii.gz")
    results = run_demo(tmp_path / "out", n_views=6, preset="fast-64", sart_iterations=10, device="cpu",
                       ct_path=tmp_path / "ct.nii.gz")
    out = tmp_path / "out"
    for name in ("reference.nii.gz", "fdk.nii.gz", "sart.nii.gz", "projections.safetensors", "metrics.json"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [r["method"] for r in rows][:2] == ["FDK", "SART"]
    assert results["SART"]["psnr"] > results["FDK"]["psnr"]
    png = np.asarray(Image.open(out / "comparison.png"))
    assert png.shape[1] >= 3 * 128 and png.std() > 10
    from deepsparse_core.evaluation import figures
    from deepsparse_core.inference import bundled_model_path

    methods = ["FDK", "SART"] + (["DiCE"] if bundled_model_path(6) else [])   # a DiCE row and column once bundled
    n = len(methods)
    assert [r["method"] for r in rows] == methods
    assert png.shape[1::-1] == figures.figure_size(n, figures.default_tile(n), notes=2) and png.shape[1] >= 1600
    if "DiCE" in methods:
        assert (out / "dice.nii.gz").is_file() and results["DiCE"]["psnr"] > results["FDK"]["psnr"]
    # a rerun for a view count without a bundled model leaves no stale DiCE volume beside its files
    (out / "dice.nii.gz").write_bytes(b"from an earlier run")
    run_demo(out, n_views=12, preset="fast-64", sart_iterations=2, device="cpu", ct_path=tmp_path / "ct.nii.gz")
    assert not (out / "dice.nii.gz").exists()


def test_the_demo_ct_in_the_training_set_is_said():
    """Issue 17: the bundled card names its training CTs; the demo's chest is one of them."""
    from deepsparse_core.inference import bundled_model_path
    from deepsparse_core.model.card import read_card, trained_on

    path = bundled_model_path(6)
    if path is None:
        pytest.skip("no bundled model")
    card = read_card(path)
    assert trained_on(card, "chest") and not trained_on(card, "lung2") and not trained_on(card, "liver")
    assert not trained_on({"data": {"train": "chest"}}, "chest") and not trained_on([], "chest")


@pytest.fixture(scope="module")
def fast_views(tmp_path_factory):
    """6- and 12-view projections of a small chest phantom at the `fast` preset (the bundled model's)."""
    d = tmp_path_factory.mktemp("fast_views")
    write_volume(phantom_volume("chest", (48, 48, 48), spacing=(8.0, 8.0, 8.0), seed=1), d / "ct.nii.gz")
    for n in (6, 12):
        assert run("simulate", d / "ct.nii.gz", "--views", n, "--preset", "fast", "--device", "cpu",
                   "--out", d / f"p{n}.safetensors") == 0
    return d


def test_default_method_is_the_bundled_dice_where_it_serves_else_sart(fast_views, tmp_path, capsys):
    """Issue 17: without --method, DiCE when a bundled model serves the view count and geometry, else
    SART (never FDK); the output line says which ran and why."""
    from deepsparse_core.inference import bundled_model_path

    capsys.readouterr()
    assert run("reconstruct", fast_views / "p12.safetensors", "--resolution", "16", "--device", "cpu",
               "--out", tmp_path / "a.nii.gz") == 0
    assert "(sart: the default, as no bundled DiCE model serves 12 views" in capsys.readouterr().out
    if bundled_model_path(6) is None:
        pytest.skip("no bundled DiCE model for 6 views in this checkout")
    assert run("reconstruct", fast_views / "p6.safetensors", "--resolution", "16", "--data-consistency", "0",
               "--device", "cpu", "--out", tmp_path / "b.nii.gz") == 0
    out = capsys.readouterr().out
    assert "(dice: the default, as the bundled DiCE model dice_6-10views serves 6 views at this geometry" in out
    assert run("reconstruct", fast_views / "p6.safetensors", "--method", "fdk", "--device", "cpu",
               "--out", tmp_path / "c.nii.gz") == 0
    assert "(fdk; 6 views" in capsys.readouterr().out


def test_the_default_does_not_pick_a_model_that_would_refuse_the_scan(fast_views, tmp_path, capsys):
    """A 130-pixel detector (the model needs multiples of 8) at an otherwise compatible geometry: SART."""
    from deepsparse_core.inference import bundled_model_path

    if bundled_model_path(6) is None:
        pytest.skip("no bundled model")
    g = Geometry.preset("fast", 6)
    odd = Geometry(**{**g.to_dict(), "detector_shape": (130, 130), "detector_spacing": (4.8 * 128 / 130,) * 2})
    odd.save(tmp_path / "odd.yaml")
    assert run("simulate", fast_views / "ct.nii.gz", "--views", 6, "--geometry", tmp_path / "odd.yaml",
               "--device", "cpu", "--out", tmp_path / "p.safetensors") == 0
    capsys.readouterr()
    assert run("reconstruct", tmp_path / "p.safetensors", "--resolution", "16", "--device", "cpu",
               "--out", tmp_path / "v.nii.gz") == 0
    assert "(sart: the default, as the bundled DiCE model dice_6-10views needs a detector in multiples of 8" in \
        capsys.readouterr().out


@pytest.mark.parametrize("options,message", [
    (["--method", "fdk", "--iterations", "5"], "--iterations does not apply to fdk: --iterations is for sart"),
    (["--method", "sart", "--model", "m.safetensors", "--cutoff", "0.5"],
     "--cutoff, --model do not apply to sart: --cutoff is for fdk; --model is for dice"),
    (["--method", "dice", "--backend", "rtk"], "--backend does not apply to dice"),
    (["--method", "dice", "--relaxation", "0.5"], "--relaxation does not apply to dice"),
    (["--filter", "cosine"], "--filter does not apply to sart \\(the default, as no bundled DiCE model serves 12"),
])
def test_options_of_another_method_are_an_error(fast_views, tmp_path, capsys, options, message):
    import re

    capsys.readouterr()
    assert run("reconstruct", fast_views / "p12.safetensors", *options, "--device", "cpu",
               "--out", tmp_path / "v.nii.gz") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err
    assert not (tmp_path / "v.nii.gz").exists()


@pytest.mark.parametrize("name", ["ct.nii.gz", "ct.nrrd", "ct.mha", "dicom_folder"])
def test_a_volume_given_as_projections_says_so(fast_views, tmp_path, capsys, name):
    path = tmp_path / name
    if name == "dicom_folder":
        path.mkdir()
    else:
        write_volume(phantom_volume("chest", (8, 8, 8)), path)
    capsys.readouterr()
    assert run("reconstruct", path, "--out", tmp_path / "v.nii.gz") == 2
    err = capsys.readouterr().err
    assert f"{path} is a volume, not a projections file: simulate its views first" in err and "safetensors" in err


@pytest.mark.parametrize("units,ext", [("hu", "nii.gz"), ("normalized", "nrrd"), ("normalized", "mha")])
def test_a_reconstruction_says_what_it_holds(fast_views, tmp_path, units, ext):
    """Issue 17: method, view count and units in the NIfTI description and the NRRD/MHA header."""
    import nibabel as nib

    out = tmp_path / f"v.{ext}"
    assert run("reconstruct", fast_views / "p12.safetensors", "--method", "fdk", "--units", units,
               "--device", "cpu", "--out", out) == 0
    image = sitk.ReadImage(str(out))
    notes = nib.load(str(out)).header["descrip"].item().decode() if ext == "nii.gz" else image.GetMetaData("ITK_FileNotes")
    expected = ("DeepSparse fdk, 12 views: HU clipped to [-1000, 1000]" if units == "hu" else
                "DeepSparse fdk, 12 views: attenuation, HU -1000..1000 -> 0..1, unclipped")
    assert notes == expected
    if ext != "nii.gz":
        assert image.GetMetaData("DeepSparse_method") == "fdk" and image.GetMetaData("DeepSparse_units") == units
