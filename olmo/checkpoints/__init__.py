"""Checkpoints on disk: the layout contract (``layout``; its names in ``paths``) and the one
retention policy.

Standard library only, so that the operator and the eval worker (no torch) can import it. The
trainer's save/load code builds on these names; ``olmo-ckpt`` (``olmo.checkpoints.cli``) lists
and rotates checkpoints from the command line.
"""

from olmo.checkpoints.layout import (
    CHECKPOINTS_DIR,
    COMPLETE,
    EVAL_DIR,
    EVALUATED,
    LATEST,
    TEMP_PREFIX,
    CheckpointInfo,
    checkpoints_dir,
    eval_result_path,
    final_dir,
    finalize,
    is_complete,
    is_evaluated,
    latest_complete,
    list_checkpoints,
    list_temp_dirs,
    mark_evaluated,
    parse_step,
    prepare_temp_dir,
    read_complete,
    resolve_checkpoint,
    sha256_file,
    step_dir_name,
    temp_dir,
    write_complete,
)
from olmo.checkpoints.retention import (
    RetentionPolicy,
    RotationResult,
    plan_deletions,
    rotate,
)

__all__ = [
    "CHECKPOINTS_DIR",
    "COMPLETE",
    "EVALUATED",
    "EVAL_DIR",
    "LATEST",
    "TEMP_PREFIX",
    "CheckpointInfo",
    "RetentionPolicy",
    "RotationResult",
    "checkpoints_dir",
    "eval_result_path",
    "final_dir",
    "finalize",
    "is_complete",
    "is_evaluated",
    "latest_complete",
    "list_checkpoints",
    "list_temp_dirs",
    "mark_evaluated",
    "parse_step",
    "plan_deletions",
    "prepare_temp_dir",
    "read_complete",
    "resolve_checkpoint",
    "rotate",
    "sha256_file",
    "step_dir_name",
    "temp_dir",
    "write_complete",
]
