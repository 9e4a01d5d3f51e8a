"""Test stand-ins shipped with the package (they never import a builder).

    scripted.py        ScriptedLLM / ScriptedServer: a deterministic rule-based OpenAI-compatible stand-in
    image_server.py    a local HTTP image server with fault routes (404s, slow, truncated, HTML, redirects, ...)
    builder_tests.py   the checks every registered builder gets (tensorflow_datasets' DatasetBuilderTestCase style)
    tiny_vlm.py        tiny random vision-language models built offline; ``python -m finer_datasets.testing.tiny_vlm
                       --out DIR`` saves one for CPU smoke runs
"""
