"""Scene graphs (objects, attributes, relations) and their negatives.

    graph.py       SceneGraph, SGObject, SGAttribute, SGRelation
    negatives.py   the NegativesProvider protocol, LexicalNegatives, PrecomputedNegatives
    lexicon.py     the bundled offline vocabularies (vocab/lexicon.json)

The negatives file format is ``schemas/negatives.schema.json``.
"""
