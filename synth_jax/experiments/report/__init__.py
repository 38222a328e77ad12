"""A sweep's report: `DIR/report.md` with PNG figures in `DIR/figures/`, `DIR/report.json` and
`DIR/summary.csv`.

What it shows, in the order a reader asks: what the synthetic images look like, whether
pre-training learned (loss curves), whether pre-training beats scratch (each size's error over
seeds against scratch's, paired by seed, with intervals; the best size's interval adjusted for
being picked from several), how fine-tuning error falls with pre-training size (the learning
curve with per-size means and seed error bars, the fitted law and its bootstrap band, labelled
with how the band was obtained), whether the law extrapolates (fit on the small sizes, predict
the large ones), and the planner's answer.

Everything is read back from the sweep's workdir (results.csv, cells.json, the pre-training
workdirs' metrics.jsonl), so the report can be rewritten at any time with `--report-only`.
The parts, in the order data flows: join.py (results rows to cells), fit.py (the numbers),
plot.py (the figures), write.py (the files).
"""

from synth_jax.experiments.report.fit import analyse, fit_curve
from synth_jax.experiments.report.write import headline, write

__all__ = ["analyse", "fit_curve", "headline", "write"]
