"""Evaluating models on FINER: prompts, answer parsing, paired-accuracy scoring, reports, engines, exports.

    prompts.py     the evaluation prompt templates (official: FINER's released script; appendix-d)
    answers.py     parse_answer (strict / official)
    scoring.py     score(): paired accuracy and its breakdowns
    report.py      report.json / report.md / plots
    runinfo.py     run.json: what produced a run; resuming another configuration is refused
    questions.py   a run's questions, one image at a time, from the per-image samples
    engines.py     Hugging Face model engines (generate, letters); imports torch
    served.py      OpenAI-compatible endpoints (vLLM, SGLang, hosted APIs) through the LLM client
    export.py      VLMEvalKit TSV (with question and pair ids), FINER's official CSV
    vlmevalkit.py  VLMEvalKit result files back into answers (prediction or judged)
    lmms/          lmms-eval task package (YAMLs + the functions they name)
"""
