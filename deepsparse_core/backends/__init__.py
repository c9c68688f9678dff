"""Optional reference backends: RTK (itk-rtk, CPU) and TIGRE (CUDA only), called by
:mod:`deepsparse_core.reconstruct` for ``--backend rtk|tigre``; each module converts our
:class:`~deepsparse_core.geometry.Geometry` to the library's own convention."""
