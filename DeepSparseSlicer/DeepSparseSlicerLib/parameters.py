"""The module's settings, kept in its parameter node (a ``vtkMRMLScriptedModuleNode``).

Values are strings (``SetParameter``); node selections are node references. In the ``.ui`` file
every widget that edits a setting carries the dynamic property ``SlicerParameterName`` naming its
key here, so the Widget binds them all with :func:`read_widget` / :func:`write_widget` and the
tests can check the ``.ui`` against these tables. No Qt import: widgets are used only through
their ``className()`` and PythonQt properties.
"""

from __future__ import annotations

# key -> default value (as stored; "1.0"-style defaults are floats, "1"/"-1" ints, "true"/"false" bools)
DEFAULTS = {
    # Input
    "sample": "chest",
    # Projections: simulate
    "views": "6",
    "arcDegrees": "180.0",
    "geometryPreset": "fast",
    "dso": "800.0",
    "dsd": "1200.0",
    "detectorRows": "128",
    "detectorColumns": "128",
    "detectorSpacing": "4.8",
    "gridSize": "128",
    "voxelSize": "3.2",
    "noise": "true",
    "photons": "100000.0",
    # Projections: import (a .safetensors file as is; scanner projections through `deepsparse import`)
    "projectionsFile": "",      # projections file, stack or folder of images
    "geometryFile": "",         # RTK geometry XML, or a geometry YAML/JSON
    "importValues": "line-integrals",  # line-integrals | flat-dark | i0 (engine.IMPORT_VALUES)
    "flatFile": "",
    "darkFile": "",
    "darkValue": "0.0",         # dark field as a number when no dark file; 0: none
    "i0Value": "65535.0",
    "importViews": "0",         # pick N views nearest to uniform; 0: all
    "importArc": "0.0",         # only views within this arc from the first (degrees); 0: the whole arc
    "viewIndices": "",          # e.g. 0,45,90 or 0-360:60, instead of importViews
    "importPixelSpacing": "0.0",  # detector pitch (mm) for files without one (TIFF, PNG); 0: the files'
    "detectorLike": "fast",     # resample to this preset's detector (its models accept the data); none: keep
    # Reconstruct
    "method": "dice",           # the bundled DiCE model for the view count (the engine's lookup)
    "modelFile": "",
    "device": "auto",
    "resolution": "0",
    "sartIterations": "20",
    "dataConsistency": "-1",  # DiCE data-consistency passes K; -1: the model card's, 0: off
    "outputUnits": "hu",
    # Compare
    "showDifference": "true",
    "computeVIF": "false",
    # Finetune
    "trainingFolder": "",
    "targetViews": "6",
    "epochs": "100",
    "baseModel": "",
    "baseModelFile": "",
    "outputModelName": "my_dice_model",
}

# node reference roles kept in the parameter node
NODE_REFERENCES = ("InputVolume", "Projections", "GroundTruth", "Reconstruction", "SecondReconstruction")

CUSTOM_GEOMETRY = "custom"  # geometryPreset value for the custom DSO/DSD/detector fields
DEVICES = ("auto", "cuda", "cpu")
UNITS = ("hu", "normalized")
NO_DETECTOR_PRESET = "none"  # detectorLike value keeping the scanner's detector

# widget class -> (PythonQt property it edits, value type, change signal)
WIDGET_BINDINGS = {
    "qMRMLNodeComboBox": ("currentNodeID", "node", "currentNodeChanged(vtkMRMLNode*)"),
    "QSpinBox": ("value", "int", "valueChanged(int)"),
    "QDoubleSpinBox": ("value", "float", "valueChanged(double)"),
    "ctkDoubleSpinBox": ("value", "float", "valueChanged(double)"),
    "ctkSliderWidget": ("value", "float", "valueChanged(double)"),
    "qMRMLSliderWidget": ("value", "float", "valueChanged(double)"),
    "QCheckBox": ("checked", "bool", "toggled(bool)"),
    "QComboBox": ("currentData", "choice", "currentIndexChanged(int)"),
    "ctkPathLineEdit": ("currentPath", "str", "currentPathChanged(QString)"),
    "QLineEdit": ("text", "str", "textChanged(QString)"),
}


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_widget(widget) -> str:
    """The widget's value as stored in the parameter node (node widgets: the node ID)."""
    prop, kind, _ = WIDGET_BINDINGS[widget.className()]
    if kind == "node":
        return widget.currentNodeID or ""
    if kind == "bool":
        return "true" if widget.checked else "false"
    if kind in ("int", "float"):
        return _number(widget.value)
    if kind == "choice":  # item data when the item has some (keys), else its text
        data = widget.currentData
        return str(data) if data not in (None, "") else widget.currentText
    return str(getattr(widget, prop) or "")


def shows(widget, value: str) -> bool:
    """Whether the widget already shows the stored value (numbers compared as numbers)."""
    kind = WIDGET_BINDINGS[widget.className()][1]
    current = read_widget(widget)
    if kind in ("int", "float"):
        return _is_number(value or "0") and float(current) == float(value or 0)
    return current == (value or "")


def write_widget(widget, value: str) -> None:
    """Show a stored value in the widget (node widgets take a node ID).

    A widget that already shows the value is left alone: the refresh after each keystroke (the
    parameter node fires Modified synchronously) would otherwise reformat a spin box being typed
    into (2.4 typed over 4.8 became 2.0) and move a line edit's cursor to the end, as in Slicer's
    own parameter-node wrapper before issue 8620.
    """
    if shows(widget, value):
        return
    prop, kind, _ = WIDGET_BINDINGS[widget.className()]
    if kind == "node":
        widget.setCurrentNodeID(value or "")
    elif kind == "bool":
        widget.checked = value == "true"
    elif kind == "int":
        widget.value = int(float(value or 0))
    elif kind == "float":
        widget.value = float(value or 0)
    elif kind == "choice":
        index = widget.findData(value)
        if index < 0:
            index = widget.findText(value)
        if index >= 0:
            widget.currentIndex = index
    else:
        setattr(widget, prop, value)


def typed(parameter_node) -> dict:
    """All settings as Python values (ints, floats, bools, strings; nodes by role)."""
    out = {}
    for key, default in DEFAULTS.items():
        raw = parameter_node.GetParameter(key) or default
        if default in ("true", "false"):
            out[key] = raw == "true"
        elif _is_number(default):
            value = float(raw) if _is_number(raw) else float(default)
            out[key] = int(value) if default.lstrip("-").isdigit() else value
        else:
            out[key] = raw
    for role in NODE_REFERENCES:
        out[role] = parameter_node.GetNodeReference(role)
    return out
