"""The panel's .ui file against the Widget code and the parameter node (XML only: no Qt, no Slicer)."""

import ast
import re
import xml.etree.ElementTree as ET

import pytest
from slicer_helpers import MODULE_DIR

from DeepSparseSlicerLib import parameters

UI = MODULE_DIR / "Resources" / "UI" / "DeepSparseSlicer.ui"
SCRIPT = MODULE_DIR / "DeepSparseSlicer.py"

# naming convention of the panel: a widget's name ends with what it is
SUFFIX_CLASSES = {
    "CollapsibleButton": {"ctkCollapsibleButton"},
    "GroupBox": {"ctkCollapsibleGroupBox", "QGroupBox"},
    "Selector": {"qMRMLNodeComboBox", "qMRMLCheckableNodeComboBox"},
    "Button": {"QPushButton"},
    "ComboBox": {"QComboBox"},
    "SpinBox": {"QSpinBox", "QDoubleSpinBox", "ctkDoubleSpinBox"},
    "SliderWidget": {"ctkSliderWidget", "qMRMLSliderWidget"},
    "PathLineEdit": {"ctkPathLineEdit"},
    "LineEdit": {"QLineEdit"},
    "CheckBox": {"QCheckBox"},
    "ProgressBar": {"QProgressBar"},
    "Label": {"QLabel"},
    "PlainTextEdit": {"QPlainTextEdit"},
    "TableView": {"qMRMLTableView"},
    "TabWidget": {"QTabWidget"},
}
# how the Widget code uses widgets, and the classes that have those members
USAGE_CLASSES = {
    "connect(\"clicked()\"": {"QPushButton"},
    ".checkedNodes(": {"qMRMLCheckableNodeComboBox"},
    ".addAttribute(": {"qMRMLNodeComboBox"},
    ".setMRMLTableNode(": {"qMRMLTableView"},
    ".appendPlainText": {"QPlainTextEdit"},
}


@pytest.fixture(scope="module")
def ui():
    return ET.parse(UI).getroot()


@pytest.fixture(scope="module")
def widgets(ui):
    return {w.get("name"): w for w in ui.iter("widget")}


def _parameter_name(widget):
    for prop in widget.findall("property"):
        if prop.get("name") == "SlicerParameterName":
            return prop.find("string").text
    return None


def test_widget_names_are_unique_and_follow_the_naming_convention(ui, widgets):
    names = [w.get("name") for w in ui.iter("widget")]
    assert len(names) == len(set(names))
    for name, widget in widgets.items():
        suffix = next((s for s in SUFFIX_CLASSES if name.endswith(s)), None)
        if suffix is not None:
            assert widget.get("class") in SUFFIX_CLASSES[suffix], (name, widget.get("class"))


def test_every_widget_the_code_uses_exists_with_the_right_class(widgets):
    code = SCRIPT.read_text()
    used = set(re.findall(r"self\.ui\.(\w+)", code))
    assert len(used) > 30
    missing = sorted(used - set(widgets))
    assert not missing, f"used by DeepSparseSlicer.py, not in the .ui: {missing}"
    for name in used:
        suffix = next((s for s in SUFFIX_CLASSES if name.endswith(s)), None)
        assert suffix is not None, f"{name}: the name does not say what it is"
        assert widgets[name].get("class") in SUFFIX_CLASSES[suffix], name
    for usage, classes in USAGE_CLASSES.items():
        for name in re.findall(r"self\.ui\.(\w+)\." + re.escape(usage.lstrip(".")), code):
            assert widgets[name].get("class") in classes, (name, usage)


def test_panel_has_the_five_sections_in_order(ui):
    root = ui.find("widget")
    assert root.get("class") == "qMRMLWidget" and root.get("name") == "DeepSparseSlicer"
    sections = [(w.get("name"), w.find("property[@name='text']/string").text)
                for w in root.iter("widget") if w.get("class") == "ctkCollapsibleButton"]
    assert [title for _, title in sections] == ["Input", "Projections", "Reconstruct", "Compare", "Finetune"]


def test_parameter_names_match_the_parameter_node_keys(widgets):
    bound = {}
    for name, widget in widgets.items():
        key = _parameter_name(widget)
        if key is None:
            continue
        assert key not in bound, f"{key} is edited by {bound[key]} and {name}"
        bound[key] = name
        cls = widget.get("class")
        assert cls in parameters.WIDGET_BINDINGS, f"{name}: no binding for {cls}"
        is_node = parameters.WIDGET_BINDINGS[cls][1] == "node"
        assert is_node == (key in parameters.NODE_REFERENCES), (name, key)
    expected = set(parameters.DEFAULTS) | set(parameters.NODE_REFERENCES)
    assert set(bound) == expected, (sorted(expected - set(bound)), sorted(set(bound) - expected))


def test_mrml_widgets_receive_the_scene(ui, widgets):
    receivers = {c.find("receiver").text for c in ui.iter("connection")
                 if c.find("signal").text == "mrmlSceneChanged(vtkMRMLScene*)"
                 and c.find("slot").text == "setMRMLScene(vtkMRMLScene*)"
                 and c.find("sender").text == "DeepSparseSlicer"}
    mrml = {name for name, w in widgets.items() if w.get("class").startswith("qMRML") and name != "DeepSparseSlicer"}
    assert mrml and mrml <= receivers, sorted(mrml - receivers)
    assert receivers <= set(widgets)


def test_custom_widgets_are_declared_for_designer(ui, widgets):
    declared = {c.find("class").text: c for c in ui.iter("customwidget")}
    used = {w.get("class") for w in widgets.values() if not w.get("class").startswith("Q")}
    assert used <= set(declared), sorted(used - set(declared))
    for cls, entry in declared.items():
        assert entry.find("header").text == f"{cls}.h" and entry.find("extends").text


def test_bindings_round_trip_values_through_fake_widgets():
    class Fake:
        def __init__(self, cls, **props):
            self._cls, self.__dict__["items"] = cls, props.pop("items", [])
            self.__dict__.update(props)

        def className(self):
            return self._cls

        def setCurrentNodeID(self, node_id):
            self.currentNodeID = node_id

        def findData(self, data):
            return next((i for i, (_, d) in enumerate(self.items) if d == data), -1)

        def findText(self, text):
            return next((i for i, (t, _) in enumerate(self.items) if t == text), -1)

        @property
        def currentData(self):
            return self.items[self.currentIndex][1]

        @property
        def currentText(self):
            return self.items[self.currentIndex][0]

    combo = Fake("QComboBox", currentIndex=0, items=[("FDK", "fdk"), ("DiCE (bundled, 6 views)", "dice:bundled/6.safetensors")])
    parameters.write_widget(combo, "dice:bundled/6.safetensors")
    assert combo.currentIndex == 1 and parameters.read_widget(combo) == "dice:bundled/6.safetensors"
    cases = [(Fake("QSpinBox", value=0), "8"), (Fake("QDoubleSpinBox", value=0.0), "4.8"),
             (Fake("qMRMLSliderWidget", value=0.0), "270"), (Fake("QCheckBox", checked=False), "true"),
             (Fake("ctkPathLineEdit", currentPath=""), "/data/cts"), (Fake("QLineEdit", text=""), "my model"),
             (Fake("qMRMLNodeComboBox", currentNodeID=""), "vtkMRMLScalarVolumeNode3")]
    for widget, value in cases:
        parameters.write_widget(widget, value)
        assert parameters.read_widget(widget) == value, widget.className()


def test_module_script_has_module_widget_logic_and_test():
    tree = ast.parse(SCRIPT.read_text())
    classes = {c.name: [ast.unparse(b) for b in c.bases] for c in tree.body if isinstance(c, ast.ClassDef)}
    assert classes["DeepSparseSlicer"] == ["ScriptedLoadableModule"]
    assert "ScriptedLoadableModuleWidget" in classes["DeepSparseSlicerWidget"]
    assert classes["DeepSparseSlicerLogic"] == ["ScriptedLoadableModuleLogic", "DeepSparseLogic"]
    assert classes["DeepSparseSlicerTest"] == ["ScriptedLoadableModuleTest"]
    text = SCRIPT.read_text()
    for needle in ('title = "DeepSparse"', 'categories = ["Reconstruction"]', "contributors", "helpText",
                   "acknowledgementText", "DeepSparse: A Foundation Model for Sparse-View CBCT Reconstruction"):
        assert needle in text
    # no torch at module load: dependencies are installed on first use, after asking
    top_imports = {a.name.split(".")[0] for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))
                   for a in n.names} | {n.module.split(".")[0] for n in tree.body
                                        if isinstance(n, ast.ImportFrom) and n.module}
    assert not top_imports & {"torch", "deepsparse_core", "numpy", "SimpleITK"}


IMPORT_KEYS = {"projectionsFile", "geometryFile", "importValues", "flatFile", "darkFile", "darkValue", "i0Value",
               "importViews", "importArc", "viewIndices", "importPixelSpacing", "detectorLike"}


def _string_list(widget, name):
    prop = widget.find(f"property[@name='{name}']")
    return [] if prop is None else [s.text for s in prop.iter("string")]


def test_import_tab_takes_the_inputs_of_deepsparse_import(widgets):
    """Issue 12, item 5: projections (stack, folder), geometry (RTK XML or YAML), values (line
    integrals, flat/dark, I0), views, arc or indices, pixel size, detector preset."""
    from deepsparse_core.data.projection_images import IMAGE_SUFFIXES

    tab = widgets["importTab"]
    in_tab = {_parameter_name(w): w for w in tab.iter("widget") if _parameter_name(w)}
    assert set(in_tab) == IMPORT_KEYS
    assert IMPORT_KEYS <= set(parameters.DEFAULTS)
    assert parameters.DEFAULTS["detectorLike"] == "fast"  # the bundled models' detector
    assert parameters.DEFAULTS["importValues"] == "line-integrals"
    projections = " ".join(_string_list(in_tab["projectionsFile"], "nameFilters"))
    assert all(f"*{suffix}" in projections for suffix in IMAGE_SUFFIXES + (".safetensors",)), projections
    assert "Dirs" in in_tab["projectionsFile"].find("property[@name='filters']/set").text
    assert "projectionsFolderButton" in {w.get("name") for w in tab.iter("widget")}
    geometry = " ".join(_string_list(in_tab["geometryFile"], "nameFilters"))
    assert all(pattern in geometry for pattern in ("*.xml", "*.yaml", "*.yml", "*.json"))
    # 0 means "the engine's default" and the spin boxes say so
    for key in ("importViews", "importArc", "importPixelSpacing", "darkValue"):
        widget = in_tab[key]
        assert widget.find("property[@name='specialValueText']") is not None, key
        assert float(widget.find("property[@name='minimum']")[0].text) == 0.0, key
        assert float(parameters.DEFAULTS[key]) == 0.0, key
    assert float(in_tab["i0Value"].find("property[@name='minimum']")[0].text) > 0

