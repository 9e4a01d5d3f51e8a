"""Dataset card templates (package data)."""
