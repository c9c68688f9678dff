"""Real Qt widgets (PyQt5, offscreen) seen the way PythonQt shows them to Slicer's Python.

PythonQt exposes Qt properties as attributes (``spin.value = 2.4``, ``combo.currentData``), a
``className()`` and string signal signatures (``connect("valueChanged(double)", slot)``). PyQt5 has
methods and bound signals instead. :class:`PythonQtWidget` maps one onto the other, so the module's
own binding code (``parameters.read_widget`` / ``write_widget``) and refresh run against Qt's real
behaviour: ``QDoubleSpinBox.setValue`` reformats the text, ``QLineEdit.setText`` moves the cursor.

``ctkPathLineEdit`` has no PyQt5 binding. It is a real ``QLineEdit`` here whose ``currentPath`` is
its text: CTK's ``setCurrentPath`` sets the text of the line edit inside its combo box, which is the
behaviour that matters for typing.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PyQt5 import QtWidgets  # noqa: E402

_TYPES = {"double": float, "int": int, "bool": bool, "QString": str}
_REAL = {"QSpinBox": QtWidgets.QSpinBox, "QDoubleSpinBox": QtWidgets.QDoubleSpinBox,
         "ctkDoubleSpinBox": QtWidgets.QDoubleSpinBox, "QLineEdit": QtWidgets.QLineEdit,
         "ctkPathLineEdit": QtWidgets.QLineEdit, "QCheckBox": QtWidgets.QCheckBox,
         "QComboBox": QtWidgets.QComboBox}
_ALIASES = {"ctkPathLineEdit": {"currentPath": "text", "currentPathChanged": "textChanged"}}


_APP = []  # the QApplication lives as long as the process (a dropped one is destroyed at once)
_WIDGETS = []  # so are the widgets: the GC may free a cycle on a job's thread, where Qt must not run


def application() -> QtWidgets.QApplication:
    if QtWidgets.QApplication.instance() is None:
        _APP.append(QtWidgets.QApplication(["pytest"]))
    return QtWidgets.QApplication.instance()


class PythonQtWidget:
    """A PyQt5 widget with PythonQt's attribute access, ``className()`` and string signals."""

    def __init__(self, widget, class_name: str, object_name: str = ""):
        object.__setattr__(self, "qt", widget)
        object.__setattr__(self, "_cls", class_name)
        object.__setattr__(self, "objectName", object_name)
        object.__setattr__(self, "_aliases", _ALIASES.get(class_name, {}))

    def className(self) -> str:
        return self._cls

    def _name(self, name: str) -> str:
        return self._aliases.get(name, name)

    def __getattr__(self, name):
        qt, name = self.qt, self._name(name)
        if qt.metaObject().indexOfProperty(name) >= 0:
            return qt.property(name)
        return getattr(qt, name)

    def __setattr__(self, name, value):
        qt, name = self.qt, self._name(name)
        if qt.metaObject().indexOfProperty(name) < 0:
            raise AttributeError(f"{self._cls} has no property {name!r}")
        if not qt.setProperty(name, value):
            raise TypeError(f"{self._cls}.{name} = {value!r} was refused")

    def connect(self, signature: str, slot) -> None:
        name, args = signature.rstrip(")").split("(")
        signal = getattr(self.qt, self._name(name))
        types = tuple(_TYPES[a] for a in args.split(",") if a)
        (signal[types] if types else signal).connect(slot)

    def property(self, name):  # QObject.property, e.g. the .ui's SlicerParameterName
        return self.qt.property(name)


def make_widget(class_name: str, object_name: str = "", props: dict | None = None) -> PythonQtWidget:
    """A real widget of ``class_name`` with the .ui's properties (dynamic ones too)."""
    application()
    qt = _REAL[class_name]()
    _WIDGETS.append(qt)
    qt.setObjectName(object_name)
    props = dict(props or {})
    for key in ("decimals", "minimum", "maximum", "singleStep", "value", "text", "checked"):  # range first
        if key in props:
            qt.setProperty(key, props.pop(key))
    for key, value in props.items():
        qt.setProperty(key, value)
    return PythonQtWidget(qt, class_name, object_name)


def real_classes() -> tuple:
    return tuple(_REAL)
