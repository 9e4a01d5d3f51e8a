"""Versioned prompt templates (package data). A new wording gets a new file version."""
