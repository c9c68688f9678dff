"""The scanner and its operators, in the scanner frame (no patient, no files): geometry, Joseph
projector, FDK, SART, noise, data consistency and the reference backends behind one interface."""
