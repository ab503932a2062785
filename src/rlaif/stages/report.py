"""Stage `report`: report/report.html (self-contained, figures as base64 PNG) and report/report.md
(figures in report/plots/) from whatever the run has produced.

Order: the results first, with the judge's and the labeler's reliability beside the win rates
and the judge-free checks (reward-model score, ROUGE-L, length) under them; then one section per
stage, with its timings, metrics and curves; then samples side by side; then the config. A stage
that has not finished is shown as such, never filled in. The content is rlaif.report.
"""

from __future__ import annotations

import time

from rlaif.artifacts import atomic_write_text, is_main_process
from rlaif.report.sections import build
from rlaif.stages import StageContext


def run(ctx: StageContext) -> dict:
    if not is_main_process():
        return {}
    t0 = time.time()
    doc = build(ctx.cfg, ctx.rundir)
    plots_dir = ctx.dir / "plots"
    plots_dir.mkdir(exist_ok=True)
    for name, png in doc.figures.items():
        (plots_dir / f"{name}.png").write_bytes(png)
    atomic_write_text(ctx.dir / "report.md", doc.markdown())
    atomic_write_text(ctx.dir / "report.html", doc.html())
    metrics = {
        "figures": sorted(doc.figures),
        "stages_shown": list(ctx.stage.upstream_of(ctx.cfg)),
        "seconds": round(time.time() - t0, 2),
    }
    print(f"[rlaif] report: {ctx.dir / 'report.html'} ({len(doc.figures)} figures)", flush=True)
    return metrics
