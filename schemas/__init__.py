"""The JSON Schemas of every file a FINER build writes (package data)."""
