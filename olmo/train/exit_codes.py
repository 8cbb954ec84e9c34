"""Exit codes of ``olmo-train``: part of the trainer CLI contract the operator reads.

Torch-free so that the operator can import it.
"""

SUCCESS = 0
"""Training reached ``max_steps``."""
FAILED = 1
"""An error: counted as a failure against the job's restart budget."""
CONFIG_ERROR = 2
"""Bad configuration or command line: retrying cannot help."""
PREEMPTED = 75
"""SIGTERM received (node preemption, eviction, drain): the trainer finished its step, saved a
checkpoint if the grace period allowed, and exited. Resumable with ``--resume latest``; not a
failure. (75 is EX_TEMPFAIL in sysexits.h: "temporary failure, try again".)"""
