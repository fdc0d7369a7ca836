"""Training losses, one per module (sentence-transformers style)."""
