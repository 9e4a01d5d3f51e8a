"""Evaluating models on FINER: answer parsing, paired-accuracy scoring, reports, engines, exports.

    answers.py    parse_answer (strict / official)
    scoring.py    score(): paired accuracy and its breakdowns
    report.py     report.json / report.md / plots
    engines.py    Hugging Face model engines (generate, letters); imports torch
    export.py     VLMEvalKit TSV, FINER's official CSV
"""
