"""Issue 18, item 4: torch is never imported in Slicer's process (the GUI thread).

A child Python blocks ``import torch`` (a meta-path finder), then runs the Logic's GUI-thread side of
load -> Simulate -> Reconstruct -> import a projections file -> Compare -> Finetune, and the catalog
lookups (methods, devices, a model file's card), against slicer-core. The background jobs are real
``deepsparse_core`` processes (they import torch: only the GUI process is blocked), except the
training of the finetune job, replaced by a copy of a tiny model file.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from slicer_helpers import MODULE_DIR, ROOT

pytestmark = pytest.mark.slicer

SCRIPT = r'''
import importlib.abc, json, shutil, sys, traceback
from pathlib import Path

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ImportError("torch imported on the GUI thread:\n" + "".join(traceback.format_stack(limit=12)))
        return None

sys.meta_path.insert(0, NoTorch())
tmp, tiny = Path(sys.argv[1]), Path(sys.argv[2])
sys.path[:0] = [sys.argv[3], sys.argv[4], sys.argv[5]]   # the module, the engine, the test helpers

from slicer_helpers import make_scene
from DeepSparseSlicerLib import engine
from DeepSparseSlicerLib.jobs import SUCCEEDED
from DeepSparseSlicerLib.logic import DeepSparseLogic

scene, app = make_scene()
logic = DeepSparseLogic(scene, app, temp_root=tmp / "work", user_models_dir=tmp / "models")
ct = logic.load_phantom("chest", 32)
for key, value in {"views": "6", "arcDegrees": "360.0", "geometryPreset": "custom", "gridSize": "32",
                   "voxelSize": "12.8", "detectorRows": "32", "detectorColumns": "32", "detectorSpacing": "19.2",
                   "device": "auto", "method": "fdk"}.items():
    logic.parameter_node().SetParameter(key, value)

def run(job):
    assert job.wait(300) == SUCCEEDED, job.error
    return job.outputs

sim = run(logic.start_simulation(ct))                       # catalog: the device, found by a probe process
rec = run(logic.start_reconstruction(sim["projections"]))
data = logic.projection_data(sim["projections"])
from deepsparse_core.data.projections_file import save_projection_arrays
again = logic.import_projections(save_projection_arrays(tmp / "views.safetensors", data.projections, data.geometry,
                                                        data.noise, None, data.placement))
scores = run(logic.start_compare(sim["reference"], [rec["volume"]]))["scores"]
keys = [m.key for m in logic.methods()]                     # catalog: the bundled and user models
chosen = logic.reconstruction.method_choice("dice-file", str(tiny))  # a model file's metadata

def fake_training(source, work, *args, **kwargs):           # prepare + train replaced by a copy
    out = Path(work) / "model.safetensors"
    return [[sys.executable, "-c", f"import shutil; shutil.copy({str(tiny)!r}, {str(out)!r})"]], out

engine.finetune_commands = fake_training
model = run(logic.start_finetune("mine", 6, 1, tiny, volume_nodes=[ct], device="auto"))["model"]
assert any(m.model is not None and m.model.path == model for m in logic.methods())
print(json.dumps({"torch": "torch" in sys.modules, "psnr": scores[0]["psnr"], "imported": again["projections"].GetName(),
                  "methods": keys, "file_views": chosen.model.n_views, "model": str(model)}))
'''


def test_the_gui_thread_side_of_every_action_runs_without_torch(tmp_path):
    import json

    from deepsparse_core.model import DiCE, DiceConfig
    from deepsparse_core.model.model_file import save_model

    tiny = save_model(tmp_path / "tiny.safetensors", DiCE(DiceConfig.tiny()), n_views=6)
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT), str(tmp_path), str(tiny), str(MODULE_DIR),
                          str(ROOT), str(ROOT / "Testing" / "slicer_module")],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-4000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["torch"] is False
    assert out["psnr"] > 10 and out["imported"] == "views projections (6 views)"
    assert {"fdk", "sart", "dice-file"} <= set(out["methods"]) and out["file_views"] == 6
    assert out["model"].endswith("mine.safetensors")
