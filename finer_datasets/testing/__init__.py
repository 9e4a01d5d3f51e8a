"""Test stand-ins shipped with the package (they never import a builder).

    scripted.py        ScriptedLLM / ScriptedServer: a deterministic rule-based OpenAI-compatible stand-in
    builder_tests.py   registry-driven tests every builder gets (tensorflow_datasets' DatasetBuilderTestCase style)
"""
