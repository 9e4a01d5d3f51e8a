"""FINER-DOCCI builder: scene graphs extracted by an LLM from DOCCI's long captions."""
