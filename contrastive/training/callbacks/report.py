"""``RUN_DIR/report.html`` at the end of fit (`contrastive.evaluation.report`), unless the
recipe says ``report: false``."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from contrastive.training.callbacks.base import Callback

if TYPE_CHECKING:
    from contrastive.training.build import Run


class Report(Callback):
    """After the run record (weights, results.json with the final evaluation) on the main process:
    the HTML report, from the backbone, recipe and eval data the run already holds.  A report that
    cannot be written costs one warning line, never the run (everything else is on disk already).
    Its path goes into the results ``fit`` returns (``report``; not into results.json)."""

    def __init__(self, record) -> None:
        self.record = record

    def on_fit_end(self, run: Run) -> None:
        if not run.main or not run.recipe.report:
            return
        from contrastive.evaluation.report import write_report

        try:
            path = write_report(run.out, run.registries, recipe=run.recipe, backbone=run.method.backbone,
                                data=self.record.monitor.data, training_data=run.dataset, device=run.device,
                                plan=run.plan)
        except Exception as exc:  # noqa: BLE001  the run is saved: a failed report must not fail it
            message = " ".join(str(exc).split()) or type(exc).__name__
            print(f"warning: report not written ({message}); try again: contrastive report {run.out}", file=sys.stderr)
            return
        self.record.results["report"] = str(path)
