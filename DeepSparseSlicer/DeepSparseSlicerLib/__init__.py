"""Helpers of the DeepSparseSlicer module; none of them imports Qt.

* :mod:`.geometry_bridge`: MRML volume nodes <-> ``deepsparse_core`` volumes (the one RAS/LPS conversion).
* :mod:`.jobs`: background processes running ``python -m deepsparse_core``, read by polling.
* :mod:`.engine`: where ``deepsparse_core`` lives, what its command line offers, which models exist.
* :mod:`.parameters`: the parameter-node keys, their defaults, and how widgets read and write them.
* :mod:`.dependencies`: the Python packages the engine needs, and installing the missing ones on request.
* :mod:`.rendering`: side-by-side slice views rendered offscreen to a PNG.
* :mod:`.logic`: the module logic, MRML in, MRML out.
"""
