"""Stage 05: evaluate the backends on the test split (or any folder of photos) with rule-based metrics.

    metrics.py   character BLEU-4, ROUGE-L, distinct-n, repetition (definitions there)
    items.py     EvalItem, load_items (a transform dataset's test split or a folder of photos)
    scoring.py   score_result (one row per backend × photo), summarize (one row per backend), RULE_METRICS
    judge.py     the optional LLM judge through poemlib.gemini, reported apart
    plots.py     make_plots
    report.py    write_report (report.html through poemlib.render)
    run.py       evaluate(), run_backends, EvaluationRun
    variants.py  with_constrained: base+格律 / lora+格律, the Qwen backends under the 格律 constraint
    settings.py  configs/evaluate.yaml
"""

from poemlib.evaluate.items import EvalItem, load_items
from poemlib.evaluate.judge import (
    JUDGE_CRITERIA,
    judge_response_schema,
    judge_rubric,
    judge_summary,
    parse_judgement,
    run_judge,
)
from poemlib.evaluate.metrics import (
    bleu4,
    distinct_n,
    lcs_length,
    ngrams,
    poem_chars,
    poem_lines,
    repeated_line_rate,
    repetition_rate,
    rouge_l,
)
from poemlib.evaluate.plots import make_plots
from poemlib.evaluate.report import write_report
from poemlib.evaluate.run import DEFAULT_OUT, EvaluationRun, evaluate, run_backends
from poemlib.evaluate.scoring import (
    HELI_RATE,
    RULE_METRICS,
    meter_summary,
    score_result,
    summarize,
)
from poemlib.evaluate.settings import (
    EvaluateSettings,
    JudgeSettings,
    load_evaluate_settings,
)
from poemlib.evaluate.variants import (
    CONSTRAINED_SUFFIX,
    ConstrainedBackend,
    is_constrained_name,
    with_constrained,
)

__all__ = [
    "CONSTRAINED_SUFFIX",
    "DEFAULT_OUT",
    "HELI_RATE",
    "JUDGE_CRITERIA",
    "RULE_METRICS",
    "ConstrainedBackend",
    "EvalItem",
    "EvaluateSettings",
    "EvaluationRun",
    "JudgeSettings",
    "bleu4",
    "distinct_n",
    "evaluate",
    "is_constrained_name",
    "judge_response_schema",
    "judge_rubric",
    "judge_summary",
    "lcs_length",
    "load_evaluate_settings",
    "load_items",
    "make_plots",
    "meter_summary",
    "ngrams",
    "parse_judgement",
    "poem_chars",
    "poem_lines",
    "repeated_line_rate",
    "repetition_rate",
    "rouge_l",
    "run_backends",
    "run_judge",
    "score_result",
    "summarize",
    "with_constrained",
    "write_report",
]
