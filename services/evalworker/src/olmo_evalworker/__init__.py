"""The eval worker service (``olmo-eval``): evaluates every new COMPLETE checkpoint of a run
exactly once with ``olmo.eval``, writes ``RUN_DIR/eval/stepNNNNNN.json`` and the checkpoint's
``EVALUATED`` marker, logs to W&B, and serves ``/healthz`` and Prometheus ``/metrics``.

- ``watcher``: the scheduling and commit semantics (``Watcher``), evaluator injected;
- ``records``: the worker's own files under ``RUN_DIR/eval/`` (failure records, metrics.jsonl);
- ``server``: Prometheus metrics, the health check and the HTTP server;
- ``wandb_sink``: W&B logging, one resumable eval run per run dir;
- ``cli``: ``olmo-eval run | watch | compare``.
"""

from olmo_evalworker.watcher import Evaluated, Failed, PassReport, Sink, Watcher

__all__ = ["Evaluated", "Failed", "PassReport", "Sink", "Watcher"]
