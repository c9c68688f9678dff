"""DeepSparse: sparse-view cone-beam CT reconstruction in 3D Slicer.

The Widget wires ``Resources/UI/DeepSparseSlicer.ui`` to the Logic; the Logic
(``DeepSparseSlicerLib/logic.py``, MRML in, MRML out, no Qt) runs ``deepsparse_core`` in background
processes that the Widget reads on a ``qt.QTimer``. Supported: Slicer 5.8 (Python 3.9) and later.
"""

import contextlib
import logging
import os
import sys
import unittest
from pathlib import Path

import qt
import slicer
import vtk
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

from DeepSparseSlicerLib import dependencies, engine, info, parameters
from DeepSparseSlicerLib.jobs import SUCCEEDED
from DeepSparseSlicerLib.logic import DeepSparseLogic
from DeepSparseSlicerLib.nodes import ROLE

IMPORT_VALUE_LABELS = ("Line integrals -log(I/I0)", "Intensities: flat (+ dark) field files",
                       "Intensities: I0 (+ dark)")  # engine.IMPORT_VALUES, in order
PROJECT_URL = "https://github.com/DeepSparseSlicer/DeepSparseSlicer"  # = DEEPSPARSE_REPOSITORY_URL in CMakeLists.txt
DOCUMENTATION_URL = f"{PROJECT_URL}/blob/main/docs/slicer.md"

CITATION = ("\"DeepSparse: A Foundation Model for Sparse-View CBCT Reconstruction\", "
            "IEEE Transactions on Medical Imaging, 2026; code: <a href=\"https://github.com/xmed-lab/DeepSparse\">"
            "github.com/xmed-lab/DeepSparse</a>.")


class DeepSparseSlicer(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "DeepSparse"
        self.parent.categories = ["Reconstruction"]
        self.parent.dependencies = []
        self.parent.contributors = ["DeepSparseSlicer contributors"]
        self.parent.helpText = (
            "Sparse-view cone-beam CT reconstruction with DiCE (DeepSparse), FDK and SART.<ol>"
            "<li><b>Input</b>: choose a CT volume (HU), or load a sample CT.</li>"
            "<li><b>Projections</b>: simulate 6/8/10 (or any number of) views over an arc, with noise, "
            "for a geometry preset or a custom scanner; or import a projections file of "
            "<code>deepsparse simulate</code>, or scanner projections (an image stack or a folder of "
            "images with RTK's geometry XML or a geometry file; line integrals, flat/dark fields or I0; "
            "resampled to the <code>fast</code> detector for the bundled models) through "
            "<code>deepsparse import</code>. Scroll through the views with <i>Show view</i>.</li>"
            "<li><b>Reconstruct</b>: pick DiCE (bundled or finetuned models, or a model file), FDK or "
            "SART, the device and the output units; the result is a new volume overlaying the CT.</li>"
            "<li><b>Compare</b>: side-by-side linked views with the same window/level, optional "
            "difference volumes, and a PSNR/SSIM table.</li>"
            "<li><b>Finetune</b>: adapt a model to your CTs (two steps); the new model joins the "
            "method list and is kept in your Slicer settings folder.</li></ol>"
            "Long work runs in the background: the panel stays responsive and Cancel stops it. "
            f"Please cite: {CITATION}")
        self.parent.helpText += f'<p>Documentation: <a href="{DOCUMENTATION_URL}">{DOCUMENTATION_URL}</a>.</p>'
        self.parent.acknowledgementText = (
            "DeepSparse (DiCE network, HyViP pretraining, two-step finetuning) is the work of the "
            f"authors of {CITATION} This extension reimplements it in the "
            "<code>deepsparse_core</code> package. Layout and habits follow SlicerMONAIAuto3DSeg and "
            "SlicerTotalSegmentator.")


def userModelsFolder() -> Path:
    """Finetuned models, kept next to the Slicer settings so they survive restarts and updates."""
    return Path(slicer.app.slicerUserSettingsFilePath).parent / "DeepSparseSlicer" / "models"


class DeepSparseSlicerLogic(ScriptedLoadableModuleLogic, DeepSparseLogic):
    """The module logic of ``DeepSparseSlicerLib/logic.py`` with the application's scene and views."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        DeepSparseLogic.__init__(self, slicer.mrmlScene, slicer.app.applicationLogic(),
                                 slicer.app.temporaryPath, userModelsFolder())

    def getParameterNode(self):
        return self.parameter_node()


class DeepSparseSlicerWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = self._parameterNode = None
        self._updatingGUI = self._engineListed = False
        self.jobs = {"main": None, "finetune": None, "catalog": None}
        self.installer = dependencies.Installer(
            lambda text: slicer.util.confirmOkCancelDisplay(text, "DeepSparse"),
            lambda requirements: slicer.util.pip_install(requirements), busy=self.waiting)

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DeepSparseSlicer.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = DeepSparseSlicerLogic()
        self.timer = qt.QTimer()
        self.timer.setInterval(200)
        self.timer.connect("timeout()", self.onPollJobs)
        # every widget with a SlicerParameterName property edits that key of the parameter node
        self.boundWidgets = [(w, w.property("SlicerParameterName")) for w in uiWidget.findChildren(qt.QWidget)
                             if w.property("SlicerParameterName")]
        for widget, key in self.boundWidgets:
            widget.connect(parameters.WIDGET_BINDINGS[widget.className()][2],
                           lambda *args, w=widget, k=key: self.updateParameterNodeFromGUI(w, k))
        for button, views in ((self.ui.views6Button, 6), (self.ui.views8Button, 8), (self.ui.views10Button, 10)):
            button.connect("clicked()", lambda v=views: setattr(self.ui.viewsSpinBox, "value", v))
        self.ui.projectionsSelector.addAttribute("vtkMRMLScalarVolumeNode", ROLE, "projections")
        self.ui.loadSampleButton.connect("clicked()", self.onLoadSample)
        self.ui.simulateButton.connect("clicked()", self.onSimulate)
        self.ui.importButton.connect("clicked()", self.onImport)
        self.ui.projectionsFolderButton.connect("clicked()", self.onChooseProjectionsFolder)
        self.ui.reconstructButton.connect("clicked()", self.onReconstruct)
        self.ui.compareButton.connect("clicked()", self.onCompare)
        self.ui.startFinetuneButton.connect("clicked()", self.onStartFinetune)
        self.ui.cancelFinetuneButton.connect("clicked()", lambda: self.jobs["finetune"] and self.jobs["finetune"].cancel())
        self.ui.cancelJobButton.connect("clicked()", lambda: self.jobs["main"] and self.jobs["main"].cancel())
        self.ui.projectionViewSliderWidget.connect("valueChanged(double)", self.onShowProjection)
        self.ui.jobProgressBar.hide()
        self.ui.userModelsLabel.text = f"New models are saved in {self.logic.user_models_dir}"
        self._fillChoices()
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def _fillChoices(self):
        combos = {self.ui.sampleComboBox: [(n, f"{n} (real CT, downloaded once)") for n in engine.sample_names()]
                  + [(f"phantom:{k}", f"{k} phantom (synthetic, offline)") for k in engine.PHANTOMS],
                  self.ui.geometryPresetComboBox: [(p, p) for p in engine.preset_names()]
                  + [(parameters.CUSTOM_GEOMETRY, "custom...")],
                  self.ui.deviceComboBox: [("auto", "auto"), ("cuda", "GPU (CUDA)"), ("cpu", "CPU")],
                  self.ui.outputUnitsComboBox: [("hu", "Hounsfield units"), ("normalized", "[0, 1] attenuation")],
                  self.ui.importValuesComboBox: list(zip(engine.IMPORT_VALUES, IMPORT_VALUE_LABELS)),
                  self.ui.detectorLikeComboBox: [(p, p) for p in engine.preset_names()]
                  + [(parameters.NO_DETECTOR_PRESET, "none (keep the scanner's detector)")]}
        for combo, items in combos.items():
            for key, text in items:
                combo.addItem(text, key)
        self.refreshModels()

    def refreshModels(self):
        """Method and base-model lists. The engine's models and devices are looked up in a
        background process (torch is not imported here); until it answers: the bundled DiCE (as stored
        by default), a model file, FDK and SART."""
        # before the search answers, the stored default is listed as what it is (not "model file...")
        methods = [("dice", "DiCE (bundled model; looking for it...)"), ("dice-file", "DiCE (model file...)"),
                   ("fdk", "FDK"), ("sart", "SART")]
        if self.logic.catalog.known:
            with self.userErrors():
                methods = [(m.key, m.label) for m in self.logic.methods()]
            self._engineListed = True
        elif self.jobs["catalog"] is None and not dependencies.missing():
            self.startCatalogProbe()
        missing = dependencies.missing() if not self.logic.catalog.known else {}
        self.ui.deviceInfoLabel.text = (
            "Models and GPUs are listed once DeepSparse's Python packages are installed (the first action asks)"
            if missing else self.logic.device_report())
        bases = [(key[len("dice:"):], label) for key, label in methods if key.startswith("dice:")]
        for combo, items in ((self.ui.methodComboBox, methods), (self.ui.baseModelComboBox, bases + [("file", "model file...")])):
            combo.blockSignals(True)  # the stored choice stays; the GUI update below shows it
            combo.clear()
            for key, text in items:
                combo.addItem(text, key)
            combo.blockSignals(False)
        self.updateGUIFromParameterNode()

    def startCatalogProbe(self):
        def done(job):
            self.jobs["catalog"] = None
            if job.status == SUCCEEDED:
                self.refreshModels()
            else:
                self.ui.deviceInfoLabel.text = f"Models and GPUs not found: {job.error or job.status}"
                self.updateGUIFromParameterNode()
        self.jobs["catalog"] = job = self.logic.start_catalog_probe(on_done=done)
        self.timer.start()
        return job

    # ------------------------------------------------------------------ parameter node
    def onReload(self):
        """Reload the module and its library (and the engine's GUI-side modules): the base reload
        only re-reads DeepSparseSlicer.py, whose imports would find the old modules in sys.modules."""
        for name in [n for n in sys.modules if n.split(".")[0] in ("DeepSparseSlicerLib", "deepsparse_core")]:
            del sys.modules[name]
        ScriptedLoadableModuleWidget.onReload(self)

    def cleanup(self):
        for job in self.jobs.values():
            if job is not None:
                job.cancel()
        self.logic.cleanup()
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event):
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        node = self.logic.getParameterNode()
        if not node.GetNodeReference("InputVolume"):  # the first CT: not projections, references, outputs
            first = next((v for v in self.logic.nodes.of_class("vtkMRMLScalarVolumeNode")
                          if v.GetAttribute(ROLE) in (None, "", "ct")), None)
            if first is not None:
                node.SetNodeReferenceID("InputVolume", first.GetID())
        self.setParameterNode(node)

    def setParameterNode(self, node):
        if self._parameterNode is not None:
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        self._parameterNode = node
        if node is not None:
            self.addObserver(node, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        self.updateGUIFromParameterNode()

    @contextlib.contextmanager
    def signalsBlocked(self, widgets):
        """Widgets that emit no signal in the block (a clamped slider would rewire a view mid-refresh)."""
        previous = [(w, w.blockSignals(True)) for w in widgets]
        try:
            yield
        finally:
            for widget, was in reversed(previous):
                widget.blockSignals(was)

    def updateGUIFromParameterNode(self, caller=None, event=None):
        if self._parameterNode is None or self._updatingGUI:
            return
        self._updatingGUI = True
        widgets = [w for w, _ in self.boundWidgets] + [self.ui.projectionViewSliderWidget]
        try:
            with self.signalsBlocked(widgets):
                self._showParameters()
        finally:
            self._updatingGUI = False

    def _showParameters(self):
        """Widgets show the parameter node (signals blocked by the caller)."""
        for widget, key in self.boundWidgets:
            value = (self._parameterNode.GetNodeReferenceID(key) if key in parameters.NODE_REFERENCES
                     else self._parameterNode.GetParameter(key))
            parameters.write_widget(widget, value or "")
        s = self.logic.settings()
        self.ui.customGeometryGroupBox.enabled = s["geometryPreset"] == parameters.CUSTOM_GEOMETRY
        self.ui.photonsSpinBox.enabled = s["noise"]
        self.ui.modelFilePathLineEdit.enabled = s["method"] == "dice-file"
        self.ui.sartIterationsSpinBox.enabled = s["method"] == "sart"
        self.ui.dataConsistencySpinBox.enabled = s["method"].startswith("dice")
        self.ui.baseModelFilePathLineEdit.enabled = s["baseModel"] == "file"
        scanner = not s["projectionsFile"].lower().endswith(".safetensors")  # converted by `deepsparse import`
        for widget in (self.ui.geometryFilePathLineEdit, self.ui.importValuesComboBox, self.ui.importViewsSpinBox,
                       self.ui.importArcSpinBox, self.ui.viewIndicesLineEdit, self.ui.importPixelSpacingSpinBox,
                       self.ui.detectorLikeComboBox):
            widget.enabled = scanner
        self.ui.flatFilePathLineEdit.enabled = scanner and s["importValues"] == "flat-dark"
        self.ui.i0ValueSpinBox.enabled = scanner and s["importValues"] == "i0"
        self.ui.darkFilePathLineEdit.enabled = self.ui.darkValueSpinBox.enabled = \
            scanner and s["importValues"] != "line-integrals"
        busy = self.jobRunning("main")
        searching = self.logic.catalog.searching  # the actions that need a device or a model wait for it
        self.ui.loadSampleButton.enabled = not busy
        self.ui.simulateButton.enabled = s["InputVolume"] is not None and not busy and not searching
        self.ui.importButton.enabled = bool(s["projectionsFile"]) and not busy
        self.ui.reconstructButton.enabled = s["Projections"] is not None and not busy and not searching
        self.ui.compareButton.enabled = s["GroundTruth"] is not None and s["Reconstruction"] is not None and not busy
        projections = s["Projections"]
        self.ui.inputInfoLabel.text = info.volume_info(s["InputVolume"])
        self.ui.projectionsInfoLabel.text = info.projections_info(projections)
        image = projections.GetImageData() if projections is not None else None
        self.ui.projectionViewSliderWidget.maximum = max(image.GetDimensions()[2] - 1, 0) if image else 0

    def updateParameterNodeFromGUI(self, widget, key):
        """Store the value of the widget the user changed (only that one: a choice that is not listed
        yet, e.g. a DiCE model before the engine is installed, stays stored)."""
        if self._parameterNode is None or self._updatingGUI:
            return
        value = parameters.read_widget(widget)
        if key in parameters.NODE_REFERENCES:
            self._parameterNode.SetNodeReferenceID(key, value or None)
        else:
            self._parameterNode.SetParameter(key, value)

    # ------------------------------------------------------------------ actions
    @contextlib.contextmanager
    def userErrors(self):
        """Show a problem as a message in the panel (its traceback goes to the log only)."""
        from deepsparse_core.errors import DeepSparseError

        try:
            yield
        except DeepSparseError as exc:
            self.showError(str(exc))
        except Exception as exc:
            logging.exception("DeepSparse")
            self.showError(f"Unexpected error: {exc} (details in the Python console log)")

    def showStatus(self, text, error=False):
        self.ui.statusLabel.text = text
        self.ui.statusLabel.setStyleSheet("color: #c0392b" if error else "")

    def showError(self, text):
        """An error in the status line and in a popup (the status line sits below the Finetune
        section, out of sight when the panel is scrolled)."""
        self.showStatus(text, error=True)
        slicer.util.errorDisplay(text, windowTitle="DeepSparse")

    @contextlib.contextmanager
    def waiting(self, text):
        """A message and the wait cursor while the GUI thread is blocked (pip_install on Slicer 5.8)."""
        self.showStatus(text)
        slicer.app.processEvents()
        qt.QApplication.setOverrideCursor(qt.Qt.WaitCursor)
        try:
            yield
        finally:
            qt.QApplication.restoreOverrideCursor()

    def jobRunning(self, key="main") -> bool:
        return self.jobs[key] is not None and self.jobs[key].running

    def engineReady(self, key="main", catalog=True) -> bool:
        """The packages are installed, no job of ``key`` runs (one main job at a time: a second
        would replace the first, which would then never be imported nor cleaned up) and, with
        ``catalog``, the background search for models and devices has answered (it is never done
        in Slicer's process: that would import torch on the GUI thread)."""
        if self.jobRunning(key):
            self.showStatus(f"{self.jobs[key].name} is still running: wait for it or cancel it.", error=True)
            return False
        if not self.installer.ensure():
            self.showStatus(self.installer.message or "DeepSparse needs its Python packages.", error=True)
            return False
        if not self._engineListed:  # first use after installing: DiCE models, devices
            self._engineListed = True
            self.refreshModels()
        if catalog and not self.logic.catalog.known:
            if not self.jobRunning("catalog"):
                self.startCatalogProbe()
            self.showStatus("Looking for DeepSparse's models and GPUs (a few seconds): the buttons come back "
                            "once they are listed.")
            self.updateGUIFromParameterNode()
            return False
        return True

    def track(self, job, key="main"):
        """Follow a job on the timer; its progress goes to the panel. A job that failed to start has
        already ended (its done callback ran inside ``start``): no progress bar, no Cancel."""
        self.jobs[key] = job
        if not job.running:
            self.updateGUIFromParameterNode()
            return
        if job.notes:
            self.showStatus(" ".join(job.notes))
        if key == "main":
            self.ui.jobProgressBar.show()
            self.ui.cancelJobButton.enabled = True
        else:
            self.ui.cancelFinetuneButton.enabled = True
            self.ui.startFinetuneButton.enabled = False
            self.ui.finetuneLogPlainTextEdit.clear()
        self.timer.start()
        self.updateGUIFromParameterNode()

    def onPollJobs(self):
        for job in list(self.jobs.values()):
            if job is not None and job.running:
                job.poll()
        if not any(j is not None and j.running for j in self.jobs.values()):
            self.timer.stop()
            self.updateGUIFromParameterNode()  # buttons back, whoever ended the last job

    def onProgress(self, info, bar=None, label=None):
        bar = bar or self.ui.jobProgressBar
        bar.maximum, bar.value = max(int(info.get("total") or 0), 1), int(info.get("done") or 0)
        extra = [f"part {info['part']}/{info['parts']}"] if info.get("parts", 1) > 1 else []
        extra += [f"loss {info['loss']:.4g}"] if isinstance(info.get("loss"), (int, float)) else []
        extra += [f"ETA {info['eta_s']:.0f} s"] if info.get("eta_s") is not None else []
        (label or self.ui.statusLabel).text = f"{info.get('task', '')}: {info.get('done')}/{info.get('total')} " + ", ".join(extra)

    def onJobDone(self, job, then=None):
        self.ui.jobProgressBar.hide()
        self.ui.cancelJobButton.enabled = False
        notes = " ".join(job.notes)
        if job.status == SUCCEEDED:
            self.showStatus(f"{job.name} done in {job.elapsed_s:.0f} s. {notes}")
            if then is not None:
                with self.userErrors():
                    then(job)
        elif job.status == "cancelled":
            self.showStatus(job.error or f"{job.name} cancelled")
        else:
            self.showError(job.error or f"{job.name} {job.status}")
        self.updateGUIFromParameterNode()

    def select(self, key, node):
        if node is not None:  # also when the module was left while a job ran
            self.logic.getParameterNode().SetNodeReferenceID(key, node.GetID())

    def selectOrClear(self, key, node):
        """Select ``node`` for ``key``, or clear the selection when there is none."""
        self.logic.getParameterNode().SetNodeReferenceID(key, node.GetID() if node is not None else None)

    def onLoadSample(self):
        with self.userErrors():
            if not self.engineReady(catalog=False):
                return
            name = self._parameterNode.GetParameter("sample")
            node = self.logic.load_phantom(name.split(":", 1)[1]) if name.startswith("phantom:") \
                else self.logic.load_sample(name)
            if node is not None:
                self.showInput(node)
                return
            self.showStatus(f"Downloading the '{name}' sample CT (once)...")
            self.track(self.logic.start_sample_download(name, on_done=lambda j: self.onJobDone(
                j, lambda j: self.showInput(j.outputs["volume"]))))

    def showInput(self, node):
        """Select a loaded CT as the input and show it in the slice views."""
        self.select("InputVolume", node)
        slicer.util.setSliceViewerLayers(background=node, fit=True)

    def onSimulate(self):
        with self.userErrors():
            if not self.engineReady():
                return
            def then(job):
                self.select("Projections", job.outputs["projections"])
                self.select("GroundTruth", job.outputs["reference"])
            self.track(self.logic.start_simulation(self._parameterNode.GetNodeReference("InputVolume"),
                                                   on_done=lambda j: self.onJobDone(j, then), on_progress=self.onProgress))

    def onChooseProjectionsFolder(self):
        folder = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), "Folder of projection images",
                                                     self._parameterNode.GetParameter("projectionsFile"))
        if folder:
            self._parameterNode.SetParameter("projectionsFile", folder)

    def onImport(self):
        """A projections file is read at once; scanner projections run ``deepsparse import`` in the
        background, whose summary line and warnings end in the status line."""
        with self.userErrors():
            if not self.engineReady(catalog=False):
                return
            s = self.logic.settings()
            if s["projectionsFile"].lower().endswith(".safetensors"):
                nodes = self.logic.import_projections(s["projectionsFile"], units=s["outputUnits"])
                self.select("Projections", nodes["projections"])
                self.selectOrClear("GroundTruth", nodes.get("reference"))  # never another dataset's
                self.showStatus(f"Imported {nodes['projections'].GetName()}.")
                return
            def then(job):
                self.select("Projections", job.outputs["projections"])
                self.selectOrClear("GroundTruth", job.outputs.get("reference"))  # scanner data: none
            self.track(self.logic.start_import(on_done=lambda j: self.onJobDone(j, then), on_progress=self.onProgress))

    def onShowProjection(self, value):
        self.logic.show_projection(self._parameterNode.GetNodeReference("Projections"), int(value))

    def onReconstruct(self):
        with self.userErrors():
            if not self.engineReady():
                return
            def then(job):
                previous = self.logic.getParameterNode().GetNodeReference("Reconstruction")
                self.select("SecondReconstruction", previous)
                self.select("Reconstruction", job.outputs["volume"])
                slicer.util.setSliceViewerLayers(background=job.outputs["volume"], fit=True)
            self.track(self.logic.start_reconstruction(self._parameterNode.GetNodeReference("Projections"),
                                                       on_done=lambda j: self.onJobDone(j, then), on_progress=self.onProgress))

    def onCompare(self):
        with self.userErrors():
            if not self.engineReady(catalog=False):
                return
            s = self.logic.settings()
            self.logic.show_comparison(s["GroundTruth"], s["Reconstruction"])

            def then(job):
                self.ui.metricsTableView.setMRMLTableNode(job.outputs["table"])
                self.showStatus("; ".join(f"{r['name']}: PSNR {r['psnr']:.2f} dB, SSIM {r['ssim']:.3f}"
                                          for r in job.outputs["scores"]))
            self.track(self.logic.start_compare(s["GroundTruth"], [s["Reconstruction"], s["SecondReconstruction"]],
                                                s["showDifference"], s["computeVIF"],
                                                on_done=lambda j: self.onJobDone(j, then), on_progress=self.onProgress))

    def onStartFinetune(self):
        with self.userErrors():
            if not self.engineReady("finetune"):
                return
            s = self.logic.settings()
            volumes = list(self.ui.trainingVolumesSelector.checkedNodes())
            base = self.logic.base_model_path(s["baseModel"], s["baseModelFile"], s["targetViews"])

            def done(job):
                self.ui.cancelFinetuneButton.enabled, self.ui.startFinetuneButton.enabled = False, True
                if job.status == SUCCEEDED:
                    self.ui.finetuneStatusLabel.text = f"Saved {job.outputs['model']}; it is now in the method list."
                    self.refreshModels()
                else:
                    self.ui.finetuneStatusLabel.text = job.error or job.status
                    if job.status != "cancelled":
                        slicer.util.errorDisplay(self.ui.finetuneStatusLabel.text, windowTitle="DeepSparse finetuning")

            self.track(self.logic.start_finetune(
                s["outputModelName"], s["targetViews"], s["epochs"], base,
                s["trainingFolder"], volumes, s["device"], on_done=done,
                on_progress=lambda info: self.onProgress(info, self.ui.finetuneProgressBar, self.ui.finetuneStatusLabel),
                on_log=self.ui.finetuneLogPlainTextEdit.appendPlainText), key="finetune")


class DeepSparseSlicerTest(ScriptedLoadableModuleTest):
    """In Slicer. ``test_workflow`` (the registered ctest, which runs every ``test_*`` method, and
    *Reload and Test*) is self-contained: a small synthetic phantom -> 6 simulated views on a 64^3
    grid -> FDK -> compare, nothing installed or downloaded (without the Python packages it says
    so and passes). With ``DEEPSPARSE_FULL_SELFTEST=1`` it runs the full workflow instead: chest
    sample CT, ``fast`` preset, DiCE when a model is bundled; it installs missing packages and
    downloads the sample (setting the variable is the consent). See docs/slicer.md."""

    SMALL = {"views": "6", "arcDegrees": "360.0", "geometryPreset": "custom", "gridSize": "64",
             "voxelSize": "6.4", "detectorRows": "64", "detectorColumns": "64", "detectorSpacing": "9.6",
             "device": "cpu", "outputUnits": "hu", "method": "fdk"}

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self, **kwargs):
        """*Reload and Test* calls this directly (no unittest runner): a skip is shown, not raised as
        a failure. ctest runs ``test_workflow`` through unittest, which reports the skip."""
        self.setUp()
        try:
            self.test_workflow()
        except unittest.SkipTest as skip:
            self.delayDisplay(f"Skipped: {skip}")

    def test_workflow(self):
        if os.environ.get("DEEPSPARSE_FULL_SELFTEST") == "1":
            self.full_workflow()
        else:
            self.phantom_workflow()

    def _reconstruct_and_compare(self, logic, ct, method_keys):
        import numpy as np

        from DeepSparseSlicerLib.geometry_bridge import node_ijk_to_ras

        job = logic.start_simulation(ct)
        self.assertEqual(job.wait(900), SUCCEEDED, job.error)
        projections, reference = job.outputs["projections"], job.outputs["reference"]
        self.assertEqual(slicer.util.arrayFromVolume(projections).shape[0], 6)
        scores = {}
        for key in method_keys:
            self.delayDisplay(f"Reconstructing with {key}")
            logic.getParameterNode().SetParameter("method", key)
            job = logic.start_reconstruction(projections)
            self.assertEqual(job.wait(900), SUCCEEDED, job.error)
            output = job.outputs["volume"]
            np.testing.assert_allclose(node_ijk_to_ras(output), node_ijk_to_ras(reference), atol=1e-4)
            scores[key] = logic.compare(reference, [output])["scores"][0]["psnr"]
            logic.show_comparison(reference, output)
        return scores

    def phantom_workflow(self):
        missing = dependencies.missing()
        if missing:  # reported as skipped, never as passed
            self.skipTest(f"missing Python packages {', '.join(missing.values())}: install them from the "
                          "module panel, or run the full self-test (DEEPSPARSE_FULL_SELFTEST=1), which installs them")
        logic = DeepSparseSlicerLogic()
        for key, value in self.SMALL.items():
            logic.getParameterNode().SetParameter(key, value)
        ct = logic.load_phantom("chest", 64)
        scores = self._reconstruct_and_compare(logic, ct, ["fdk"])
        self.assertGreater(scores["fdk"], 10.0)
        self.delayDisplay(f"Phantom workflow passed: FDK PSNR {scores['fdk']:.1f} dB")

    def full_workflow(self):
        missing = dependencies.missing()
        if missing:  # running the test is consent to install what it needs
            self.delayDisplay(f"Installing {', '.join(missing.values())}")
            dependencies.install(missing, slicer.util.pip_install, dependencies.pytorchutils_installer())
        logic = DeepSparseSlicerLogic()
        self.delayDisplay("Loading the chest sample CT")
        ct = logic.load_sample("chest")
        if ct is None:
            job = logic.start_sample_download("chest")
            job.wait(1200)
            ct = job.outputs.get("volume") or logic.load_phantom("chest")  # offline: a phantom
        for key, value in {"views": "6", "geometryPreset": "fast", "outputUnits": "hu"}.items():
            logic.getParameterNode().SetParameter(key, value)
        dice = [m for m in logic.methods() if m.method == "dice" and m.model and m.model.bundled
                and (6 in m.model.view_counts or m.model.n_views in (6, None))]
        scores = self._reconstruct_and_compare(logic, ct, ["fdk"] + ([dice[0].key] if dice else []))
        self.assertGreater(scores["fdk"], 10.0)
        if dice:
            self.assertGreater(scores[dice[0].key], scores["fdk"], f"DiCE should beat FDK: {scores}")
        self.delayDisplay(f"PSNR (dB): {scores}")
