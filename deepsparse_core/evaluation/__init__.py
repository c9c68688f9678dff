"""Scores and reports: metrics, the quality benchmark, comparison figures."""
