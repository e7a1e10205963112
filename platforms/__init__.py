"""platforms package."""
