"""The generic build core: it knows no dataset.

A builder (``builders/<name>/``) declares what is dataset-specific; the core does the rest:
output safety (lock, staging folder, atomic swap), sharding, schema validation, the manifest,
the card from the schema, verification.

    builder.py    DatasetBuilder (what a builder declares and its hooks), BuildContext, BuildReport, Sample
    registry.py   builder discovery: every builders/<name>/builder.py, entry points, register_builder_folder
    build.py      build(): source -> units -> (model stages) -> per-image samples -> shards + card + manifest
    output.py     where a build may write; lock, staging folder, atomic replace, stale-run recovery
    source.py     reading source JSON / JSON Lines with one-line errors
    images.py     full-decode image checks
    shards.py     deterministic WebDataset tar writing
    reader.py     reading samples back from the shards of a dataset folder
    validation.py JSON Schema loading/validation and the Hugging Face features derived from schemas
    manifest.py   manifest.json (self-digest, confined paths) and verify()
    card.py       the dataset card: YAML metadata from the record schema + the card template
                  (hub_cards/<name>.md)
    text.py       unicode clean-up and small text helpers
"""
