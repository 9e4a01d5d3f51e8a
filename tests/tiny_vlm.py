"""The tiny offline vision-language models of the tests: they live in the package
(:mod:`finer_datasets.testing.tiny_vlm`, also ``python -m finer_datasets.testing.tiny_vlm --out DIR``)."""

from finer_datasets.testing.tiny_vlm import (  # noqa: F401
    CHAT_TEMPLATE,
    CORPUS,
    QWEN_CHAT_TEMPLATE,
    tiny_llava,
    tiny_llava_next,
    tiny_qwen25_vl,
    tiny_qwen25_vl_processor,
    tiny_qwen_tokenizer,
    tiny_tokenizer,
)
