"""Helpers of the DeepSparseSlicer module; none of them imports Qt.

* :mod:`.logic`: the module logic, a short facade (MRML in, MRML out) over the parts below.
* :mod:`.nodes`: the parameter node and the module's volume nodes (making, finding, removing).
* :mod:`.catalog`: the engine's models and device choices (found in a background process).
* :mod:`.projections`: projections nodes <-> ``deepsparse_core`` projection data; the settings' geometry.
* :mod:`.reconstruction`: simulation and reconstruction jobs.
* :mod:`.compare`: scoring against a ground truth (in the background) and the metrics table.
* :mod:`.views`: layout and slice views (comparison, projections), offscreen render.
* :mod:`.finetune`: finetuning jobs (``deepsparse prepare``, then one ``train`` run).
* :mod:`.background`: working folders and the start of the Logic's jobs.
* :mod:`.jobs`: background processes, read by polling, cancelled without waiting.
* :mod:`.worker`: the module's own background commands (catalog, compare).
* :mod:`.engine`: where ``deepsparse_core`` lives, its models, the command lines it is given.
* :mod:`.geometry_bridge`: MRML volume nodes <-> ``deepsparse_core`` volumes (the one RAS/LPS conversion).
* :mod:`.parameters`: the parameter-node keys, their defaults, and how widgets read and write them.
* :mod:`.dependencies`: the Python packages the engine needs, and installing the missing ones on request.
* :mod:`.rendering`: side-by-side slice views rendered offscreen to a PNG.
"""
