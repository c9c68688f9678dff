"""The scanner and its operators (no patient, no files): geometry, projector, FDK, SART, noise, data consistency, reference backends."""
