"""The only place that scores: seeded test masks, the method's fill policy, metrics.

Everything that turns a method and masks into numbers lives here: `predict` (logits under
masks), `validate` (what a training stage declares, on the valid split), `evaluate` (every test
protocol: patterns, rates, eta, frame-level sweeps), `oracle_table` (the Bayes oracle),
`generation_table` (what a completing method generates, ADMC Table 4), `inference_throughput`
(the benchmark's timed inference), multi-seed aggregation and the results files.

    rows = evaluate(method, data, conditions=pattern_conditions(data.modalities), seed=1111)
    rows += evaluate(method, data, conditions=rate_conditions(), seed=1111)
    write_results(rows, "runs/compare")

Masks are drawn once per condition over the whole split with
``draw_masks(cond.generator, pad_masks(split), modalities, seed)``, so every method compared
with the same seed sees the same masks (CIDer's code, too, draws its test masks once, with seed
1111). Models receive
``batch.for_eval()``: masked, filled features without the complete originals.

A "method" is anything with ``.name``, ``.fill`` and ``.predict_logits(batch) -> (B, C)``,
an `mmlab.methods.base.Method` or, e.g., a wrapper around a dataset's Bayes oracle.
"""

from mmlab.evaluate.scoring import (AUILC, AVERAGE, DEFAULT_RATES, KEYS, METRICS, NON_METRICS, Condition, Predictor,
                                    classifier_scores, eta_conditions, evaluate, pattern_conditions, predict,
                                    rate_conditions, validate, validate_classifier,
                                    validate_per_pattern)
from mmlab.evaluate.generation import EXACT, exact_name, generation_table, inference_throughput, oracle_table
from mmlab.evaluate.results import (CSV_NAME, MD_NAME, UNSCALED, aggregate, metric_scale, read_results,
                                    results_markdown, split_of, write_results)

__all__ = ["AUILC", "AVERAGE", "CSV_NAME", "DEFAULT_RATES", "EXACT", "exact_name", "KEYS", "MD_NAME", "METRICS", "NON_METRICS",
           "Condition", "Predictor", "aggregate", "classifier_scores", "eta_conditions", "evaluate",
           "generation_table", "inference_throughput", "oracle_table", "pattern_conditions", "predict",
           "rate_conditions", "read_results", "results_markdown", "metric_scale", "split_of", "UNSCALED", "validate",
           "validate_classifier", "validate_per_pattern", "write_results"]
