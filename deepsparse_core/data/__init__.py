"""CTs and projections as files and datasets: volume I/O, preprocessing, samples, phantoms, simulation, candidate caches, splits, scanner import."""
