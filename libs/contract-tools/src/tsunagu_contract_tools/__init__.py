"""Generated contract artifacts and the compatibility gate (a development tool, not a runtime dependency)."""
