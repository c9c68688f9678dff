"""Scoring reconstructions against a ground truth, in the background.

The GUI thread copies the volumes out of the scene and writes them; the module's
worker (``python -m DeepSparseSlicerLib.worker compare``) resamples the ground truth onto each
reconstruction's grid (in world space, through both parent transforms; linear), scores PSNR/SSIM (and VIF) in [0, 1] units
with ``deepsparse_core.evaluation.metrics`` and writes the difference volumes; the done callback fills the
metrics table node and makes the difference nodes (reconstruction - ground truth, in the ground
truth's units, under the reconstruction's parent transform).
"""

from __future__ import annotations

import json
import warnings

from . import engine
from .background import Background, write_volumes
from .geometry_bridge import volume_from_node
from .jobs import Job
from .nodes import SceneNodes, error

METRICS_TABLE = "DeepSparse metrics"


def _number(value) -> float:
    return float("nan") if value is None else float(value)


class Comparison:
    def __init__(self, nodes: SceneNodes, background: Background):
        self.nodes, self.background = nodes, background

    def start(self, ground_truth, reconstructions, difference: bool = True, vif: bool = False,
              on_done=None, on_progress=None) -> Job:
        """Score each reconstruction node against ``ground_truth``; the job's outputs are
        ``{"table": node, "differences": [nodes], "scores": [{"name", "psnr", "ssim"[, "vif"]}]}``."""
        if ground_truth is None:
            raise error("choose a ground-truth volume (the simulated reference or the CT)")
        reconstructions = [r for r in reconstructions if r is not None]
        if not reconstructions:
            raise error("choose a reconstruction to compare")
        engine.core_location()
        gt = volume_from_node(ground_truth, world=True)  # both in world space: parent transforms count
        gt_units, window = self.nodes.units_and_window(ground_truth, gt.array)
        work = self.background.work_dir("compare")
        files, entries = {work / "ground_truth.nii": gt}, []
        for i, node in enumerate(reconstructions):
            rec = volume_from_node(node, world=True)
            files[work / f"reconstruction_{i}.nii"] = rec
            entries.append({"path": str(work / f"reconstruction_{i}.nii"),
                            "units": self.nodes.units_and_window(node, rec.array)[0]})
        spec = {"ground_truth": {"path": str(work / "ground_truth.nii"), "units": gt_units},
                "reconstructions": entries, "window": list(window), "vif": bool(vif),
                "difference": bool(difference), "out_dir": str(work)}
        with self.background.removed_on_error(work):
            write_volumes(files)
            (work / "compare.json").write_text(json.dumps(spec))
        gt_id, gt_name = ground_truth.GetID(), ground_truth.GetName()
        rec_ids = [n.GetID() for n in reconstructions]

        def finish(job: Job):
            rows = sorted((r for r in job.results if "psnr" in r), key=lambda r: r["index"])
            if len(rows) != len(rec_ids):
                raise RuntimeError(f"the comparison scored {len(rows)} of {len(rec_ids)} reconstructions")
            with self.nodes.new_nodes() as created:
                diffs = [self._difference(row, self.nodes.by_id(rec_ids[row["index"]]), gt_name, gt_units,
                                          window, created) for row in rows if row.get("difference")]
                scores = [{"name": self._name(rec_ids[r["index"]]),  # NaN comes as null (strict JSON)
                           **{k: _number(r[k]) for k in ("psnr", "ssim", "vif") if k in r}} for r in rows]
                table = self.metrics_table(gt_name, scores, vif, created)
            job.outputs.update(table=table, differences=diffs, scores=scores, ground_truth=self.nodes.by_id(gt_id))

        job = self.background.job([engine.worker_command("compare", work / "compare.json")], "comparison", work,
                                  on_progress)
        return self.background.start(job, finish, work, on_done)

    def _name(self, node_id) -> str:
        node = self.nodes.by_id(node_id)
        return node.GetName() if node is not None else node_id

    def _difference(self, row, rec_node, gt_name, units, window, created):
        from deepsparse_core.data.volume_io import read_volume

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            volume = read_volume(row["difference"], check_hu=False, allow_constant=True)
        name = rec_node.GetName() if rec_node is not None else "reconstruction"
        node = self.nodes.add_volume(volume, f"{name} difference", created, units=units, window=window,
                                     role="difference")
        if rec_node is not None:  # the reconstruction's grid: its own IJKToRAS, then its parent transform
            import vtk

            m = vtk.vtkMatrix4x4()
            rec_node.GetIJKToRASMatrix(m)
            node.SetIJKToRASMatrix(m)
        scale = (window[1] - window[0]) if units == "hu" else 1.0
        node.GetDisplayNode().SetWindowLevel(0.4 * scale, 0.0)
        self.nodes.same_parent_transform(node, rec_node)
        return node

    def metrics_table(self, gt_name: str, rows: list, with_vif: bool, created: list):
        """The table node "DeepSparse metrics" (reused), one row per reconstruction."""
        import vtk

        table = self.nodes.scene.GetFirstNode(METRICS_TABLE, "vtkMRMLTableNode")
        if table is None:
            table = self.nodes.scene.AddNewNodeByClass("vtkMRMLTableNode", METRICS_TABLE)
            created.append(table)
        table.RemoveAllColumns()
        columns = [("Reconstruction", vtk.vtkStringArray()), ("Ground truth", vtk.vtkStringArray()),
                   ("PSNR (dB)", vtk.vtkDoubleArray()), ("SSIM", vtk.vtkDoubleArray())]
        if with_vif:
            columns.append(("VIF", vtk.vtkDoubleArray()))
        for title, array in columns:
            array.SetName(title)
            for row in rows:
                value = {"Reconstruction": row["name"], "Ground truth": gt_name, "PSNR (dB)": row["psnr"],
                         "SSIM": row["ssim"], "VIF": row.get("vif")}[title]
                array.InsertNextValue(value if isinstance(value, str) else float(value))
            table.AddColumn(array)
        table.Modified()
        return table
