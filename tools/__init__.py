"""Developer tools that are not part of the service (the hot path's compilation)."""
