"""CTs and projections as files and datasets: volumes and their I/O, the HU window, preprocessing,
patient placement, projections files, simulation, samples, phantoms, candidate caches, view
selection, splits, ``deepsparse prepare`` and scanner import/export."""
