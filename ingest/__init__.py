"""Ingest: documents → chunks → vectors. Submodules are imported where needed (no heavy imports here)."""
