"""The Widget code of DeepSparseSlicer.py run against stand-ins for Qt and the Slicer application.

Real Slicer builds the panel from the .ui with PythonQt; here each widget of the .ui is a small
Python object with the properties and methods the Widget uses, and ``qt``,
``slicer.ScriptedLoadableModule`` and ``slicer.app`` are stand-ins. The scene, the Logic and the
parameter node are real (slicer-core). This catches wiring errors (names, signals, callbacks,
parameter round trips) that only a Slicer session would otherwise show.

The ``qt_module`` tests replace the spin boxes, line edits, path line edits, check boxes and combo
boxes with real Qt widgets (PyQt5 offscreen, :mod:`qt_adapter`) and type into them with ``QTest``,
so Qt's own behaviour (text reformatting, cursor moves, signals) meets the module's refresh.
"""

from __future__ import annotations

import os
import sys
import types
import unittest
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from slicer_helpers import MODULE_DIR, make_scene

pytestmark = pytest.mark.slicer
UI = MODULE_DIR / "Resources" / "UI" / "DeepSparseSlicer.ui"


class FakeWidget:
    """One widget of the .ui: class name, dynamic properties, signal connections, plain attributes."""

    def __init__(self, cls, name, props):
        self._cls, self.objectName, self._props, self._slots = cls, name, props, {}
        self._blocked, self.calls = False, []  # calls: what the Widget did to it, in order
        self.enabled, self.visible, self.text, self.value, self.maximum = True, True, props.get("text", ""), 0, 0
        self.checked = props.get("checked", False)
        self.currentPath, self.currentNodeID, self.currentIndex, self.items = "", "", -1, []
        self.plain, self.table, self.attributes = [], None, []
        if "value" in props:
            self.value = props["value"]

    def className(self):
        return self._cls

    def connect(self, signal, slot):
        self._slots.setdefault(signal, []).append(slot)

    def emit(self, signal, *args):
        if self._blocked:  # QObject.blockSignals: nothing is delivered
            return
        for slot in self._slots.get(signal, []):
            slot(*args)

    def hide(self):
        self.visible = False

    def show(self):
        self.visible = True

    def setStyleSheet(self, _):
        pass

    def blockSignals(self, block):
        self.calls.append(("blockSignals", bool(block)))
        was, self._blocked = self._blocked, bool(block)
        return was

    # QComboBox
    def addItem(self, text, data=None):
        self.items.append((text, data))
        if self.currentIndex < 0:
            self.currentIndex = 0

    def clear(self):
        self.items, self.currentIndex = [], -1
        self.plain = []

    @property
    def count(self):
        return len(self.items)

    @property
    def currentData(self):
        return self.items[self.currentIndex][1] if 0 <= self.currentIndex < len(self.items) else None

    @property
    def currentText(self):
        return self.items[self.currentIndex][0] if 0 <= self.currentIndex < len(self.items) else ""

    def findData(self, data):
        return next((i for i, (_, d) in enumerate(self.items) if d == data), -1)

    def findText(self, text):
        return next((i for i, (t, _) in enumerate(self.items) if t == text), -1)

    # MRML widgets
    def setCurrentNodeID(self, node_id):
        self.currentNodeID = node_id

    def setMRMLScene(self, scene):
        self.scene = scene

    def addAttribute(self, *args):
        self.attributes.append(args)

    def checkedNodes(self):
        return []

    def setMRMLTableNode(self, node):
        self.table = node

    # QPlainTextEdit
    def appendPlainText(self, text):
        self.plain.append(text)

    def property(self, name):  # QObject.property (defined last: it shadows the builtin in this class)
        return self._props.get(name) if name == "SlicerParameterName" else None


class FakeSlider(FakeWidget):
    """A ctkSliderWidget: lowering ``maximum`` below ``value`` clamps it and emits valueChanged."""

    @property
    def maximum(self):
        return self.__dict__.get("_maximum", 0)

    @maximum.setter
    def maximum(self, value):
        self.__dict__["_maximum"] = value
        if hasattr(self, "calls"):
            self.calls.append(("maximum", value))
        if self.value > value:
            self.value = value
            self.emit("valueChanged(double)", float(value))


def fake_ui(real_qt=False):
    """The .ui's widgets as stand-ins; with ``real_qt`` the spin boxes, line edits, path line edits,
    check boxes and combo boxes are real PyQt5 widgets behind a PythonQt-style adapter."""
    if real_qt:
        import qt_adapter
    root = None
    widgets = {}
    for element in ET.parse(UI).getroot().iter("widget"):
        props = {}
        for prop in element.findall("property"):
            value = prop[0]
            props[prop.get("name")] = {"bool": lambda v: v.text == "true", "number": lambda v: int(v.text),
                                       "double": lambda v: float(v.text)}.get(value.tag, lambda v: v.text)(value)
        if real_qt and element.get("class") in qt_adapter.real_classes():
            widget = qt_adapter.make_widget(element.get("class"), element.get("name"),
                                            {k: v for k, v in props.items() if v is not None})
        else:
            cls = FakeSlider if element.get("class") == "ctkSliderWidget" else FakeWidget
            widget = cls(element.get("class"), element.get("name"), props)
        widgets[widget.objectName] = widget
        root = root or widget
    root.findChildren = lambda cls: [w for w in widgets.values() if w is not root]
    return root, widgets


@pytest.fixture
def module(monkeypatch, tmp_path):
    """DeepSparseSlicer.py imported with stand-ins; yields (module, scene, app logic, widgets)."""
    yield from _module(monkeypatch, tmp_path, real_qt=False)


@pytest.fixture
def qt_module(monkeypatch, tmp_path):
    """As ``module``, with real Qt input widgets (PyQt5 offscreen; skipped without PyQt5)."""
    if os.environ.get("CI") != "true":  # CI installs the test extra, which has PyQt5: never skipped there
        pytest.importorskip("PyQt5.QtWidgets", reason="needs PyQt5 for the real-Qt widget tests (the test extra)")
    yield from _module(monkeypatch, tmp_path, real_qt=True)


def _module(monkeypatch, tmp_path, real_qt):
    import slicer

    scene, app = make_scene()
    qt = types.ModuleType("qt")

    class QTimer:
        def __init__(self):
            self.active, self.slots = False, []

        def setInterval(self, ms):
            pass

        def connect(self, signal, slot):
            self.slots.append(slot)

        def start(self):
            self.active = True

        def stop(self):
            self.active = False

    qt.QTimer, qt.QWidget = QTimer, object
    qt.Qt = types.SimpleNamespace(WaitCursor=3)
    qt.QApplication = types.SimpleNamespace(setOverrideCursor=lambda c: None, restoreOverrideCursor=lambda: None)
    slm = types.ModuleType("slicer.ScriptedLoadableModule")

    class ScriptedLoadableModule:
        def __init__(self, parent):
            self.parent = parent

        def getDefaultModuleDocumentationLink(self):
            return ""

    class ScriptedLoadableModuleWidget:
        def __init__(self, parent=None):
            self.parent = parent or types.SimpleNamespace(isEntered=True)
            self.layout = types.SimpleNamespace(addWidget=lambda w: None)

        def setup(self):
            pass

        def resourcePath(self, path):
            return str(MODULE_DIR / "Resources" / path)

        def onReload(self):  # Slicer's: re-reads the module file only
            self.reloaded = True

    class ScriptedLoadableModuleLogic:
        def __init__(self, parent=None):
            pass

    slm.ScriptedLoadableModule, slm.ScriptedLoadableModuleWidget = ScriptedLoadableModule, ScriptedLoadableModuleWidget
    class ScriptedLoadableModuleTest(unittest.TestCase):
        def delayDisplay(self, message, msec=None):
            print(message)

    slm.ScriptedLoadableModuleLogic, slm.ScriptedLoadableModuleTest = ScriptedLoadableModuleLogic, ScriptedLoadableModuleTest
    env = types.SimpleNamespace(keys=lambda: list(os.environ), value=lambda k: os.environ[k])
    app_stub = types.SimpleNamespace(applicationLogic=lambda: app, temporaryPath=str(tmp_path / "tmp"),
                                     slicerUserSettingsFilePath=str(tmp_path / "settings" / "Slicer.ini"),
                                     startupEnvironment=lambda: env, processEvents=lambda: None)
    root, widgets = fake_ui(real_qt)
    monkeypatch.setitem(sys.modules, "qt", qt)
    monkeypatch.setitem(sys.modules, "slicer.ScriptedLoadableModule", slm)
    monkeypatch.setattr(slicer, "ScriptedLoadableModule", slm, raising=False)
    monkeypatch.setattr(slicer, "app", app_stub, raising=False)
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    monkeypatch.setattr(slicer.util, "loadUI", lambda path: root)
    monkeypatch.setattr(slicer.util, "childWidgetVariables", lambda w: types.SimpleNamespace(**widgets))
    shown, popups = [], []  # what the slice views were given, the error popups
    monkeypatch.setattr(slicer.util, "setSliceViewerLayers", lambda **kw: shown.append(kw.get("background")))
    monkeypatch.setattr(slicer.util, "errorDisplay", lambda text, **kw: popups.append(text), raising=False)
    monkeypatch.setitem(sys.modules, "DeepSparseSlicer", None)
    sys.modules.pop("DeepSparseSlicer")
    import DeepSparseSlicer

    made = []

    def make_widget(searched=True):
        """A set-up panel; with ``searched``, once its model search (a real background job) has answered."""
        widget = DeepSparseSlicer.DeepSparseSlicerWidget()
        widget.setup()
        made.append(widget)
        if searched and widget.jobs["catalog"] is not None:
            run_timer(widget, timeout=120)
        return widget

    DeepSparseSlicer.make_widget = make_widget
    DeepSparseSlicer.shown, DeepSparseSlicer.popups = shown, popups
    yield DeepSparseSlicer, scene, app, widgets
    for widget in made:
        widget.cleanup()  # scene observers
    sys.modules.pop("DeepSparseSlicer", None)


def run_timer(widget, timeout=30.0):
    """What the QTimer does in Slicer: poll the jobs until none runs."""
    import time

    deadline = time.monotonic() + timeout
    while widget.timer.active and time.monotonic() < deadline:
        widget.onPollJobs()
        time.sleep(0.02)
    assert not widget.timer.active


def _finished_job(outputs, on_done, status="succeeded", error=None):
    """A job that already ended, as the Logic's would, calling the Widget's on_done."""
    from DeepSparseSlicerLib.jobs import Job

    job = Job([[sys.executable, "-c", "pass"]], name="stand-in")
    job.outputs.update(outputs)

    def finish(j):
        if status != "succeeded":
            j.fail(error)

    job.add_done_callback(finish)
    job.add_done_callback(on_done)
    return job.start()


def test_module_metadata(module):
    mod = module[0]
    parent = types.SimpleNamespace()
    mod.DeepSparseSlicer(parent)
    assert parent.title == "DeepSparse" and parent.categories == ["Reconstruction"]
    assert "6/8/10" in parent.helpText and "DeepSparse: A Foundation Model" in parent.acknowledgementText


def test_help_links_to_the_extension_documentation(module):
    """Issue 10, bug 3: the extension's own docs, not Slicer's core-module pages."""
    mod = module[0]
    parent = types.SimpleNamespace()
    mod.DeepSparseSlicer(parent)
    assert f'href="{mod.PROJECT_URL}/blob/main/docs/slicer.md"' in parent.helpText
    assert "slicer.readthedocs.io" not in parent.helpText and "getDefaultModuleDocumentationLink" not in \
        (MODULE_DIR / "DeepSparseSlicer.py").read_text()


def test_refreshing_the_panel_emits_no_slider_signal(module, monkeypatch):
    """Issue 10, bug 4: setting the slider's maximum during the refresh clamps its value; with
    signals blocked, onShowProjection does not run mid-refresh and the Red view is not rewired."""
    mod, scene, app, w = module
    widget = mod.make_widget()
    shown = []
    monkeypatch.setattr(type(widget.logic), "show_projection", lambda self, node, index, view="Red": shown.append(index))
    node = widget.logic.getParameterNode()
    projections = _volume(scene, "projections")  # 8 views
    node.SetNodeReferenceID("Projections", projections.GetID())
    slider = w["projectionViewSliderWidget"]
    assert slider.maximum == 7
    slider.value = 7
    slider.emit("valueChanged(double)", 7.0)  # the user shows the last view
    assert shown == [7]
    slider.calls.clear()
    fewer = _volume(scene, "fewer views", views=3)
    node.SetNodeReferenceID("Projections", fewer.GetID())  # the refresh lowers the maximum to 2
    assert slider.maximum == 2 and slider.value == 2
    assert shown == [7], "onShowProjection ran during the GUI refresh"
    assert slider.calls == [("blockSignals", True), ("maximum", 2), ("blockSignals", False)]


def test_panel_edits_the_parameter_node_and_shows_it_back(module):
    mod, scene, app, w = module
    widget = mod.make_widget(searched=False)
    node = widget.logic.getParameterNode()
    assert {key for _, key in widget.boundWidgets} >= {"views", "method", "InputVolume", "outputModelName"}
    # choices filled: presets + custom, devices, units, samples + phantoms; FDK/SART at least
    assert w["geometryPresetComboBox"].findData("custom") >= 0 and w["geometryPresetComboBox"].findData("fast") >= 0
    assert [d for _, d in w["deviceComboBox"].items] == ["auto", "cuda", "cpu"]
    assert w["sampleComboBox"].findData("phantom:chest") >= 0
    assert {"fdk", "sart"} <= {d for _, d in w["methodComboBox"].items}
    # torch is not imported on the GUI thread when the panel opens: models and GPUs come from a job
    assert widget.jobs["catalog"] is not None and not widget.logic.catalog.known
    assert w["deviceInfoLabel"].text.startswith("Looking")
    run_timer(widget, timeout=120)
    assert widget.logic.catalog.known and "Looking" not in w["deviceInfoLabel"].text
    # a user edit reaches the parameter node...
    w["viewsSpinBox"].value = 8
    w["viewsSpinBox"].emit("valueChanged(int)", 8)
    assert node.GetParameter("views") == "8"
    w["views10Button"].emit("clicked()")  # quick choice: sets the spin box, whose signal saves it
    w["viewsSpinBox"].emit("valueChanged(int)", 10)
    assert node.GetParameter("views") == "10"
    # only the changed widget is stored: a method not listed (yet) is kept
    node.SetParameter("method", "dice:user/restored_from_scene.safetensors")
    w["photonsSpinBox"].value = 5e4
    w["photonsSpinBox"].emit("valueChanged(double)", 5e4)
    assert node.GetParameter("photons") == "50000"
    assert node.GetParameter("method") == "dice:user/restored_from_scene.safetensors"
    # ...and a parameter-node change (e.g. a loaded scene) reaches the panel
    node.SetParameter("geometryPreset", "custom")
    node.SetParameter("method", "sart")
    assert w["geometryPresetComboBox"].currentData == "custom" and w["customGeometryGroupBox"].enabled
    assert w["methodComboBox"].currentData == "sart" and w["sartIterationsSpinBox"].enabled
    assert not w["simulateButton"].enabled  # no CT yet


def test_actions_show_messages_and_select_the_new_nodes(module, monkeypatch):
    mod, scene, app, w = module
    widget = mod.make_widget(searched=False)
    logic = widget.logic
    # before the model search has answered, the actions that need it wait for it (buttons off; a
    # click says so): searching here would import torch on the GUI thread
    assert logic.catalog.searching and not w["reconstructButton"].enabled
    widget.onSimulate()
    assert w["statusLabel"].text.startswith("Looking for DeepSparse's models and GPUs")
    run_timer(widget, timeout=120)
    assert logic.catalog.known
    # bad input: a message in the panel and a popup (issue 18, item 14), no exception
    widget.onSimulate()
    assert "no volume selected" in w["statusLabel"].text and "no volume selected" in mod.popups[-1]
    # load a phantom (offline sample) -> selected as input
    node = widget.logic.getParameterNode()
    node.SetParameter("sample", "phantom:chest")
    monkeypatch.setattr(type(logic), "load_phantom", lambda self, kind, size=128: _volume(scene, f"{kind} phantom"))
    widget.onLoadSample()
    ct = node.GetNodeReference("InputVolume")
    assert ct is not None and ct.GetName() == "chest phantom" and w["simulateButton"].enabled
    # simulate: the job's outputs become the selected projections and ground truth
    proj, ref = _volume(scene, "projections"), _volume(scene, "reference")
    monkeypatch.setattr(type(logic), "start_simulation",
                        lambda self, ct_node, on_done=None, on_progress=None, **k:
                        _finished_job({"projections": proj, "reference": ref}, on_done))
    widget.onSimulate()
    run_timer(widget)
    assert node.GetNodeReference("Projections") is proj and node.GetNodeReference("GroundTruth") is ref
    assert "done" in w["statusLabel"].text and not w["jobProgressBar"].visible
    # reconstruct twice: the previous output becomes the second reconstruction
    outputs = [_volume(scene, "rec 1"), _volume(scene, "rec 2")]
    monkeypatch.setattr(type(logic), "start_reconstruction",
                        lambda self, p, on_done=None, on_progress=None, **k:
                        _finished_job({"volume": outputs.pop(0)}, on_done))
    widget.onReconstruct()
    run_timer(widget)
    widget.onReconstruct()
    run_timer(widget)
    assert node.GetNodeReference("Reconstruction").GetName() == "rec 2"
    assert node.GetNodeReference("SecondReconstruction").GetName() == "rec 1"
    # a failed job: its message, in the panel
    monkeypatch.setattr(type(logic), "start_reconstruction",
                        lambda self, p, on_done=None, on_progress=None, **k:
                        _finished_job({}, on_done, "failed", "the background process stopped unexpectedly"))
    widget.onReconstruct()
    run_timer(widget)
    assert "stopped unexpectedly" in w["statusLabel"].text and "stopped unexpectedly" in mod.popups[-1]
    # compare: a background job (the panel does not wait); table in the view, scores in the status line
    widget.onCompare()
    assert w["metricsTableView"].table is None and w["jobProgressBar"].visible
    run_timer(widget, timeout=120)
    assert w["metricsTableView"].table is not None and "PSNR" in w["statusLabel"].text, w["statusLabel"].text
    assert app.GetSliceLogicByLayoutName("Yellow").GetSliceCompositeNode().GetBackgroundVolumeID() == \
        node.GetNodeReference("Reconstruction").GetID()
    # progress lines
    widget.onProgress({"task": "train", "done": 3, "total": 10, "eta_s": 12.0, "loss": 0.25, "part": 2, "parts": 3},
                      w["finetuneProgressBar"], w["finetuneStatusLabel"])
    assert w["finetuneProgressBar"].value == 3 and w["finetuneProgressBar"].maximum == 10
    assert "part 2/3" in w["finetuneStatusLabel"].text and "loss 0.25" in w["finetuneStatusLabel"].text


def test_finetune_button_reports_a_missing_training_command_or_starts(module, monkeypatch, tmp_path):
    mod, scene, app, w = module
    widget = mod.make_widget()
    node = widget.logic.getParameterNode()
    node.SetParameter("baseModel", "file")
    node.SetParameter("baseModelFile", str(tmp_path / "missing.safetensors"))
    widget.onStartFinetune()
    assert "base model file" in w["statusLabel"].text
    started = {}

    def start(self, name, views, epochs, base, folder, volumes, device, on_done=None, on_progress=None, on_log=None):
        started.update(name=name, views=views, epochs=epochs, base=base)
        return _finished_job({"model": tmp_path / f"{name}.safetensors"}, on_done)

    (tmp_path / "base.safetensors").write_bytes(b"")
    node.SetParameter("baseModelFile", str(tmp_path / "base.safetensors"))
    monkeypatch.setattr(type(widget.logic), "start_finetune", start)
    widget.onStartFinetune()
    run_timer(widget)
    assert started == {"name": "my_dice_model", "views": 6, "epochs": 100, "base": tmp_path / "base.safetensors"}
    assert "Saved" in w["finetuneStatusLabel"].text and w["startFinetuneButton"].enabled
    assert not w["cancelFinetuneButton"].enabled


def _volume(scene, name, views=8):
    import slicer

    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    slicer.util.updateVolumeFromArray(node, np.linspace(-1000, 1000, views * 64, dtype=np.float32).reshape(views, 8, 8))
    node.CreateDefaultDisplayNodes()
    return node


def test_a_downloaded_sample_is_selected_and_shown(module, monkeypatch):
    """Issue 18, item 14: the sample CT that a download job brings is shown in the slice views, like
    a cached one (it used to be selected only)."""
    mod, scene, app, w = module
    widget = mod.make_widget()
    logic, downloaded = widget.logic, _volume(scene, "chest sample CT")
    monkeypatch.setattr(type(logic), "load_sample", lambda self, name="chest": None)  # not cached yet
    monkeypatch.setattr(type(logic), "start_sample_download",
                        lambda self, name="chest", on_done=None: _finished_job({"volume": downloaded}, on_done))
    widget.logic.getParameterNode().SetParameter("sample", "chest")
    widget.onLoadSample()
    run_timer(widget)
    assert logic.getParameterNode().GetNodeReference("InputVolume") is downloaded
    assert mod.shown[-1] is downloaded and not mod.popups


def test_the_registered_ctest_is_self_contained(module, monkeypatch):
    """Issue 10, item 10: ``runTest`` (what ``slicer_add_python_unittest`` runs) needs no install and
    no download: a small phantom, 6 views on a 64^3 grid, FDK, compare."""
    mod, scene, app, w = module
    from DeepSparseSlicerLib import dependencies
    from DeepSparseSlicerLib.logic import DeepSparseLogic

    def forbidden(*args, **kwargs):
        raise AssertionError("the ctest installed or downloaded something")

    monkeypatch.setattr(dependencies, "install", forbidden)
    monkeypatch.setattr(DeepSparseLogic, "start_sample_download", forbidden)
    monkeypatch.setattr(DeepSparseLogic, "load_sample", forbidden)
    monkeypatch.setattr(scene, "Clear", lambda *a: None, raising=False)  # keep the test's slice views
    monkeypatch.delenv("DEEPSPARSE_FULL_SELFTEST", raising=False)
    assert unittest.TestLoader().getTestCaseNames(mod.DeepSparseSlicerTest) == ["test_workflow"]  # what ctest runs
    mod.DeepSparseSlicerTest().runTest()
    table = scene.GetFirstNode("DeepSparse metrics", "vtkMRMLTableNode")
    assert table is not None and float(table.GetCellText(0, 2)) > 10.0


def test_import_section_runs_deepsparse_import_in_the_background_with_its_messages(module, monkeypatch, tmp_path):
    """Issue 12, item 5: the Import tab's choices are the engine's, the widgets that do not apply to the
    value mode are disabled, a folder can be chosen, scanner projections go through a background job
    (the engine's summary and warnings in the status line), a projections file is read at once."""
    import SimpleITK as sitk
    import slicer
    import torch

    from deepsparse_core.data.projections_file import ProjectionData, save_projections
    from deepsparse_core.physics.geometry import Geometry
    from DeepSparseSlicerLib import engine

    mod, scene, app, w = module
    folder = tmp_path / "scan"
    folder.mkdir()
    monkeypatch.setattr(sys.modules["qt"], "QFileDialog", types.SimpleNamespace(
        getExistingDirectory=lambda parent, caption, start: str(folder)), raising=False)
    monkeypatch.setattr(slicer.util, "mainWindow", lambda: None)
    widget = mod.make_widget()
    node = widget.logic.getParameterNode()
    assert [d for _, d in w["importValuesComboBox"].items] == list(engine.IMPORT_VALUES)
    assert w["detectorLikeComboBox"].currentData == "fast" and w["detectorLikeComboBox"].findData("none") >= 0
    assert not w["importButton"].enabled  # nothing chosen yet
    w["projectionsFolderButton"].emit("clicked()")
    assert node.GetParameter("projectionsFile") == str(folder) and w["projectionsFilePathLineEdit"].currentPath == str(folder)
    enabled = lambda *names: [w[n].enabled for n in names]  # noqa: E731
    value_widgets = ("flatFilePathLineEdit", "darkFilePathLineEdit", "darkValueSpinBox", "i0ValueSpinBox")
    assert enabled(*value_widgets) == [False, False, False, False]  # line integrals
    node.SetParameter("importValues", "flat-dark")
    assert enabled(*value_widgets) == [True, True, True, False]
    node.SetParameter("importValues", "i0")
    assert enabled(*value_widgets) == [False, True, True, True] and w["importButton"].enabled

    # a scanner stack with intensities and a dark value, through the real engine in a child process
    g = Geometry.preset("fast", 4, arc_degrees=360.0).with_grid((16,) * 3, (12.0,) * 3)
    g.save(tmp_path / "geometry.yaml")
    intensities = np.full((4,) + g.detector_shape, 1000.0, np.float32)
    intensities[0, :2, :2] = 50.0  # below the dark value: clamped, with the engine's warning
    image = sitk.GetImageFromArray(intensities)
    image.SetSpacing(g.detector_spacing[::-1] + (1.0,))
    sitk.WriteImage(image, str(folder / "raw.mha"))
    for key, value in {"projectionsFile": str(folder / "raw.mha"), "geometryFile": str(tmp_path / "geometry.yaml"),
                       "i0Value": "2000.0", "darkValue": "100.0", "detectorLike": "none"}.items():
        node.SetParameter(key, value)
    widget.onImport()
    assert widget.jobs["main"] is not None and w["jobProgressBar"].visible and not w["importButton"].enabled
    run_timer(widget, timeout=120)
    status = w["statusLabel"].text
    imported = node.GetNodeReference("Projections")
    assert imported is not None and imported.GetName() == "raw projections (4 views)", status
    assert "done" in status, status
    assert f"4 views 90° apart (arc 360°), {g.detector_shape[0]}x{g.detector_shape[1]} pixels" in status, status
    assert "warning: " in status and "at or below the dark" in status, status
    assert w["importButton"].enabled
    # the engine's one-line error, as the job's message
    node.SetParameter("viewIndices", "0,7")
    widget.onImport()
    run_timer(widget, timeout=120)
    assert "out of range" in w["statusLabel"].text and node.GetNodeReference("Projections") is imported
    # what the panel checks itself
    previous = widget.jobs["main"]
    node.SetParameter("projectionsFile", str(tmp_path / "missing.mha"))
    widget.onImport()
    assert "projections not found" in w["statusLabel"].text and widget.jobs["main"] is previous

    # a projections file: read at once, the scanner options disabled
    path = save_projections(tmp_path / "p.safetensors", ProjectionData(torch.zeros(4, *g.detector_shape), g))
    node.SetParameter("projectionsFile", str(path))
    assert not w["geometryFilePathLineEdit"].enabled and not w["importValuesComboBox"].enabled
    assert not w["detectorLikeComboBox"].enabled and not w["i0ValueSpinBox"].enabled
    widget.onImport()
    assert node.GetNodeReference("Projections").GetName() == "p projections (4 views)"
    assert w["statusLabel"].text == "Imported p projections (4 views)."


# ---------------------------------------------------------------------------------- real Qt (issue 18)
TYPED_NUMBERS = [("detectorSpacingSpinBox", "detectorSpacing", "2.4", 2.4),
                 ("voxelSizeSpinBox", "voxelSize", "1.25", 1.25),
                 ("importPixelSpacingSpinBox", "importPixelSpacing", "0.388", 0.388)]


@pytest.mark.parametrize("name,key,keys,expected", TYPED_NUMBERS)
def test_typing_a_number_keeps_what_was_typed(qt_module, name, key, keys, expected):
    """Issue 18, bug 1: every keystroke is stored, the node's Modified refreshes the panel, and the
    refresh must not rewrite the spin box being edited (setValue reformats its text: 2.4 became 2.0)."""
    from PyQt5.QtTest import QTest

    mod, scene, app, w = qt_module
    widget = mod.make_widget()
    spin = w[name].qt
    spin.selectAll()
    QTest.keyClicks(spin, keys)
    assert spin.value() == pytest.approx(expected) and spin.cleanText().rstrip("0") == keys
    assert float(widget.logic.getParameterNode().GetParameter(key)) == pytest.approx(expected)


@pytest.mark.parametrize("name,key", [("outputModelNameLineEdit", "outputModelName"),
                                      ("trainingFolderPathLineEdit", "trainingFolder")])
def test_typing_inside_a_text_field_keeps_the_cursor(qt_module, name, key):
    """Issue 18, bug 1: "XYZ" typed at position 2 of "my_dice_model" gives "myXYZ_dice_model"
    (setText in the refresh moved the cursor to the end: "myX_dice_modelYZ")."""
    from PyQt5.QtTest import QTest

    mod, scene, app, w = qt_module
    widget = mod.make_widget()
    edit = w[name].qt
    edit.setText("my_dice_model")  # emits textChanged: stored like a user edit
    assert widget.logic.getParameterNode().GetParameter(key) == "my_dice_model"
    edit.setCursorPosition(2)
    QTest.keyClicks(edit, "XYZ")
    assert edit.text() == "myXYZ_dice_model" and edit.cursorPosition() == 5
    assert widget.logic.getParameterNode().GetParameter(key) == "myXYZ_dice_model"


def test_a_scene_value_still_reaches_real_widgets(qt_module):
    """The compare-before-write of bug 1 still shows values that differ (a loaded scene)."""
    mod, scene, app, w = qt_module
    widget = mod.make_widget()
    node = widget.logic.getParameterNode()
    node.SetParameter("detectorSpacing", "1.25")
    node.SetParameter("outputModelName", "head_model")
    node.SetParameter("noise", "false")
    node.SetParameter("views", "9")
    assert w["detectorSpacingSpinBox"].qt.value() == 1.25 and w["outputModelNameLineEdit"].qt.text() == "head_model"
    assert not w["noiseCheckBox"].qt.isChecked() and w["viewsSpinBox"].qt.value() == 9
    assert not w["photonsSpinBox"].qt.isEnabled()  # noise off: the refresh still runs on


def test_no_second_main_job_while_one_runs(module, monkeypatch):
    """Issue 18, bug 2: "Load sample CT" is disabled while a job runs, and a click that gets through
    does not replace the running job (whose result would never be imported nor its folder removed)."""
    from DeepSparseSlicerLib.jobs import Job

    mod, scene, app, w = module
    widget = mod.make_widget()
    started = []
    monkeypatch.setattr(type(widget.logic), "load_sample", lambda self, name="chest": None)
    monkeypatch.setattr(type(widget.logic), "start_sample_download",
                        lambda self, name="chest", on_done=None: started.append(name))
    job = Job([[sys.executable, "-c", "import time; time.sleep(60)"]], name="simulation").start()
    try:
        widget.track(job)
        assert not w["loadSampleButton"].enabled and not w["simulateButton"].enabled
        widget.onLoadSample()
        assert started == [] and widget.jobs["main"] is job
        assert "simulation is still running" in w["statusLabel"].text
    finally:
        job.cancel()
    run_timer(widget)
    assert w["loadSampleButton"].enabled


def test_a_job_that_fails_to_start_leaves_no_progress_bar_nor_cancel(module, monkeypatch):
    """Issue 18, item 12: the interpreter cannot be started, the job ends inside start(): the panel
    shows its error, with no progress bar and Cancel disabled."""
    from DeepSparseSlicerLib.jobs import Job

    mod, scene, app, w = module
    widget = mod.make_widget()

    def start(self, node, on_done=None, on_progress=None, **kwargs):
        job = Job([["/nonexistent/python3", "-c", "pass"]], name="simulation")
        job.add_done_callback(on_done)
        return job.start()

    monkeypatch.setattr(type(widget.logic), "start_simulation", start)
    widget.logic.getParameterNode().SetNodeReferenceID("InputVolume", _volume(scene, "ct").GetID())
    widget.onSimulate()
    assert "cannot start /nonexistent/python3" in w["statusLabel"].text
    assert not w["jobProgressBar"].visible and not w["cancelJobButton"].enabled
    assert w["simulateButton"].enabled


def test_no_stale_selection_after_an_import_nor_a_projections_node_as_the_ct(module, monkeypatch):
    """Issue 18, item 8: the panel's CT is never a projections, reference or output volume, and
    importing scanner projections (which have no ground truth) clears the previous dataset's."""
    mod, scene, app, w = module
    projections = _volume(scene, "old projections")
    projections.SetAttribute("DeepSparse.Role", "projections")
    difference = _volume(scene, "difference")
    difference.SetAttribute("DeepSparse.Role", "difference")
    ct = _volume(scene, "patient CT")
    widget = mod.make_widget()
    node = widget.logic.getParameterNode()
    assert node.GetNodeReference("InputVolume") is ct
    node.SetNodeReferenceID("GroundTruth", _volume(scene, "earlier ground truth").GetID())
    node.SetParameter("projectionsFile", "/scanner/stack.tif")
    imported = _volume(scene, "scanner projections")
    monkeypatch.setattr(type(widget.logic), "start_import",
                        lambda self, on_done=None, on_progress=None: _finished_job({"projections": imported}, on_done))
    widget.onImport()
    run_timer(widget)
    assert node.GetNodeReference("Projections") is imported and node.GetNodeReference("GroundTruth") is None
    assert not w["compareButton"].enabled


def test_reload_also_reloads_the_library(module):
    """Issue 18, item 15: Reload drops DeepSparseSlicerLib and deepsparse_core from sys.modules before
    Slicer re-reads DeepSparseSlicer.py, so edited library modules are imported again."""
    import DeepSparseSlicerLib.parameters  # noqa: F401
    import deepsparse_core.errors  # noqa: F401

    mod, scene, app, w = module
    widget = mod.make_widget()
    saved = dict(sys.modules)
    try:
        widget.onReload()
        assert widget.reloaded
        assert not [n for n in sys.modules if n.split(".")[0] in ("DeepSparseSlicerLib", "deepsparse_core")]
    finally:  # the rest of the suite keeps the module objects it imported
        sys.modules.update(saved)


def test_the_self_test_skips_visibly_without_its_packages(module, monkeypatch):
    """Issue 18, item 9: without the Python packages the registered test is skipped, not passed."""
    mod, scene, app, w = module
    from DeepSparseSlicerLib import dependencies

    monkeypatch.setattr(dependencies, "missing", lambda: {"torch": "torch>=2.1,<3"})
    monkeypatch.setattr(scene, "Clear", lambda *a: None, raising=False)
    monkeypatch.delenv("DEEPSPARSE_FULL_SELFTEST", raising=False)
    result = unittest.TestResult()  # what ctest's unittest runner sees: a skip with its reason
    unittest.TestLoader().loadTestsFromTestCase(mod.DeepSparseSlicerTest).run(result)
    assert result.testsRun == 1 and not result.failures and not result.errors
    assert len(result.skipped) == 1 and "missing Python packages torch>=2.1,<3" in result.skipped[0][1]
    shown = []  # Reload and Test calls runTest directly: the skip is displayed, not an error
    monkeypatch.setattr(mod.DeepSparseSlicerTest, "delayDisplay", lambda self, text, msec=None: shown.append(text))
    mod.DeepSparseSlicerTest().runTest()
    assert shown == ["Skipped: missing Python packages torch>=2.1,<3: install them from the module panel, or run "
                     "the full self-test (DEEPSPARSE_FULL_SELFTEST=1), which installs them"]


def test_the_panel_describes_its_ct_and_projections(module):
    """Issue 18, item 14: the info labels show the CT's size and spacing and the projections' views
    (the engine's wording), detector and grid."""
    import json

    from deepsparse_core.physics.geometry import Geometry

    mod, scene, app, w = module
    widget = mod.make_widget()
    node = widget.logic.getParameterNode()
    ct = _volume(scene, "ct")
    ct.SetSpacing(0.5, 0.75, 2.0)
    projections = _volume(scene, "views", views=6)
    projections.SetAttribute("DeepSparse.Role", "projections")
    projections.SetAttribute("DeepSparse.Geometry", json.dumps(Geometry.preset("fast", 6).to_dict()))
    node.SetNodeReferenceID("InputVolume", ct.GetID())
    node.SetNodeReferenceID("Projections", projections.GetID())
    assert w["inputInfoLabel"].text == "8 x 8 x 8 voxels at 0.5 x 0.75 x 2 mm"
    assert w["projectionsInfoLabel"].text == ("6 views 30° apart (arc 180°); detector 128 x 128 at 4.8 x 4.8 mm, "
                                              "DSO 800 / DSD 1200 mm; grid 128x128x128 at 3.2 mm (fast)")


def test_before_the_model_search_the_list_shows_what_will_run(module, monkeypatch):
    """Issue 18, item 7: the stored default "dice" is listed (and shown) before the background search
    answers, and without the packages the label says what to do instead of "Looking..." forever."""
    from DeepSparseSlicerLib import dependencies

    mod, scene, app, w = module
    widget = mod.make_widget(searched=False)
    assert not widget.logic.catalog.known
    assert w["methodComboBox"].currentData == "dice" and "bundled" in w["methodComboBox"].currentText
    monkeypatch.setattr(dependencies, "missing", lambda: {"torch": "torch>=2.1,<3"})
    for job in widget.jobs.values():
        if job is not None:
            job.cancel()
    widget.jobs["catalog"] = None
    widget.refreshModels()
    assert w["deviceInfoLabel"].text.startswith("Models and GPUs are listed once") and widget.jobs["catalog"] is None
