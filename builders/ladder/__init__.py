"""FINER-Ladder: the granularity ladder built from FINER benchmark builds."""
