"""The generic build core: it knows no dataset.

A builder (``builders/<name>/``) declares what is dataset-specific; the core does the rest:
output safety (lock, temporary folder, atomic swap), sharding, schema validation, the manifest,
the card from the schema, verification.

    builder.py    DatasetBuilder (what a builder declares), BuildContext, BuildReport, the registry
    build.py      build(): source -> stages -> per-image samples -> validated shards + card + manifest
    output.py     where a build may write; lock, temporary folder, atomic replace, stale-run clean-up
    shards.py     deterministic WebDataset tar writing
    schemas.py    JSON Schema loading/validation and Hugging Face features derived from schemas
    manifest.py   manifest.json (self-digest, confined paths) and verify()
    card.py       the dataset card: YAML metadata from the schema + the builder's card.md
    images.py     full-decode image checks
    text.py       unicode clean-up and small text helpers
"""
