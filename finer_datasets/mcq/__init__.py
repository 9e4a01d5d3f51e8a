"""FINER multiple-choice question pairs: constants, pure seeded construction, per-image records.

    constants.py   LETTERS, SETTINGS, setting aliases (the one definition of each)
    construct.py   MCQ, MCQPair, yesno_pair, wh_pair (pure functions of inputs and a random.Random)
    pairs.py       the sampling policy: which pairs an image yields (KLimits; table9 / per-k)
    paper.py       the paper's numbers for a benchmark (PaperStats) and the card tables beside them
    records.py     per-image records <-> flat pair / question rows (the one flatten)
    ladder.py      the granularity ladder (paper, Fig. 1 / E.7): chains and the 7 levels x 2 forms of an image
    positions.py   position rotation (E.1): every k = 3 multi_* pair negated at positions 1, 2, 3
    release_import.py  the authors' released tables -> pairs and records (their pairing rule, ids)
    release_text.py    k, negated position, elements, option types read back from a released pair's text
    release_tables.py  reading those tables (CSV / TSV / Parquet, the Hub layout) and their image cells

The record schema (one WebDataset sample per image) is the repository's ``schemas/mcq_image.schema.json``.
"""
