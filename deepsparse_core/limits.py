"""Work bounds: what a command line, a recipe or a model card may ask for at most.

Work that would run for days is refused with one line instead (the defaults: 20 SART iterations,
the bundled card's 16 data-consistency passes). Imports nothing: every layer may read these.
"""

MAX_SART_ITERATIONS = 10_000
MAX_DATA_CONSISTENCY = 200   # DiCE's data-consistency passes, from the command line or a model card

__all__ = ["MAX_SART_ITERATIONS", "MAX_DATA_CONSISTENCY"]
