"""Optional reference backends behind the same interface as the torch operators (RTK, TIGRE)."""
