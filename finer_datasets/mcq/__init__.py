"""FINER multiple-choice question pairs: constants, pure seeded construction, per-image records.

    constants.py   LETTERS, SETTINGS, setting aliases (the one definition of each)
    construct.py   MCQ, MCQPair, yesno_pair, wh_pair (pure functions of inputs and a random.Random)
    pairs.py       the sampling policy: which pairs an image yields (KLimits)
    records.py     per-image records <-> flat pair / question rows (the one flatten)

The record schema (one WebDataset sample per image) is the repository's ``schemas/mcq_image.schema.json``.
"""
