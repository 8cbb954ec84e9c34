"""Exit codes of ``olmo-train``: part of the trainer CLI contract the operator reads.

Torch-free so that the operator can import it.
"""

SUCCESS = 0
"""Training reached ``max_steps``."""
FAILED = 1
"""An error: counted as a failure against the job's restart budget."""
CONFIG_ERROR = 2
"""Bad configuration or command line: retrying cannot help."""
FENCED = 3
"""A newer attempt of the job (or another OLMoJob) owns the run directory (``RUN_DIR/ATTEMPT``,
``olmo.checkpoints.fence``): the trainer stopped without writing. Not PREEMPTED on purpose: a
fenced trainer belongs to an attempt the operator has already ended, so nothing should restart
for it; and if the operator ever saw it for its current attempt (two jobs sharing a run
directory), a failure counts against the restart budget where a preemption would restart for
free, forever. Not CONFIG_ERROR: the config is fine, the directory is taken."""
PREEMPTED = 75
"""SIGTERM received (node preemption, eviction, drain): the trainer finished its step, saved a
checkpoint if the grace period allowed, and exited. Resumable with ``--resume latest``; not a
failure. (75 is EX_TEMPFAIL in sysexits.h: "temporary failure, try again".)"""
PREFLIGHT_FAILED = 77
"""The preflight (``olmo.train.preflight``, run when ``OLMO_PREFLIGHT_TIMEOUT_SECONDS`` > 0) found
a broken device, storage or collective on some rank: every rank exits with this code before
training, after rank 0 reported the failures (``preflight`` in the progress report, naming each
failing rank's node). torchrun turns a worker's code into its own 1, so the operator reads the
report, not the code; a preflight failure is not charged to the restart budget."""
