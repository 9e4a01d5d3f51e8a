"""Evaluating models on FINER: prompts, answer parsing, paired-accuracy scoring, reports, engines, exports.

    prompts.py     the evaluation prompt templates (official: FINER's released script; appendix-d)
    answers.py     parse_answer (strict / official)
    scoring.py     score(): paired accuracy and its breakdowns, under both parsers, with coverage
    intervals.py   95% intervals: Wilson score (groups by k / position) and percentile bootstrap
    quality.py     loud results: the share of unparseable answers, the warning, exit 7 when none is read
    sources.py     answers from any route (JSONL + run.json, VLMEvalKit, lmms-eval) and the pairs scored
    predictions.py reading predictions JSONL line by line
    report.py      report.json / report.md (headline, banner, baselines defined)
    plots.py       accuracy_by_k.png (n and Wilson interval per point) / fp_fn_rates.png
    analyses.py    report parts for the ladder (by level, Fig. 1 / 12) and rotated positions (E.1)
    runinfo.py     run.json: what produced a run; resuming another configuration is refused
    questions.py   a run's questions, one image at a time, from the per-image samples
    engines.py     Hugging Face model engines (generate, letters); imports torch
    served.py      OpenAI-compatible endpoints (vLLM, SGLang, hosted APIs) through the LLM client
    export.py      VLMEvalKit TSV (with question and pair ids), FINER's official CSV
    vlmevalkit.py  VLMEvalKit result files back into answers (prediction or judged)
    lmms/          lmms-eval task package (YAMLs + the functions they name); samples.py reads a run back
"""
