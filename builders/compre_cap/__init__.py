"""FINER-CompreCap builder."""
