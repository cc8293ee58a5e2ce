"""Conventions shared by every layer: seeds, result objects, safe file writes."""
