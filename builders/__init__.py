"""FINER dataset builders, one folder each (installed as ``finer_datasets.builders``).

A folder ``<name>/`` with a ``builder.py`` is a dataset; ``finer_datasets.core.registry`` finds it.
Nothing here lists them.
"""
