"""The eval worker service (``olmo-eval``): evaluates every new COMPLETE checkpoint of a run
exactly once with ``olmo.eval``, writes ``RUN_DIR/eval/stepNNNNNN.json`` and the checkpoint's
``EVALUATED`` marker, logs to W&B, and serves ``/healthz`` and Prometheus ``/metrics``.

- ``watcher``: the scheduling and commit semantics (``Watcher``), evaluator injected;
- ``outcomes``: what became of a checkpoint and of a pass, and the ``Sink`` told about each;
- ``records``: the worker's own files under ``RUN_DIR/eval/`` (failure records, metrics.jsonl);
- ``server``: Prometheus metrics, the health check and the HTTP server;
- ``wandb_sink``, ``status_sink``: W&B logging (one resumable eval run per run dir), and the
  OLMoJob's status;
- ``worker``: ``watch`` wired up: sinks, the loop thread, HTTP, SIGTERM and abandoning;
- ``cli``: ``olmo-eval run | watch | compare``.
"""

from olmo_evalworker.outcomes import Evaluated, Failed, PassReport, Sink
from olmo_evalworker.watcher import Watcher

__all__ = ["Evaluated", "Failed", "PassReport", "Sink", "Watcher"]
