"""Downstream tasks in-loop (``olmo.eval``) every ``eval.interval`` steps. Every rank takes part:
items are spread over the ranks, and under ZeRO-3 each forward gathers the sharded parameters,
so all ranks must run it. The other callbacks hear ``evaluating`` while it runs, then
``training`` (``on_activity``)."""

from __future__ import annotations

import logging
import time
import types
from pathlib import Path

from olmo.train.callbacks.base import EVALUATING, TRAINING, Callback, StepEnd
from olmo.train.config import TrainConfig
from olmo.train.distributed import DistInfo
from olmo.train.metrics import MetricsLogger

log = logging.getLogger("olmo.train")


def eval_tokenizer(config: TrainConfig):
    """The tokenizer of the in-loop downstream tasks (loaded before training starts, so that a
    missing one is a config error): ``eval.tokenizer``, or the ``tokenizer.json`` data-prep
    wrote next to the first ``data.paths`` folder that has one."""
    from olmo.eval import load_tokenizer, prompt_tokenizer

    path = config.eval.tokenizer
    if path is None:
        candidates = [Path(p) for p in config.data.paths]
        found = [c / "tokenizer.json" for c in candidates if (c / "tokenizer.json").is_file()]
        if not found:
            raise ValueError(
                "eval.tasks is set but no tokenizer is known: set eval.tokenizer, or train on "
                "a data-prep output folder (it holds tokenizer.json)"
            )
        path = found[0]
    holder = types.SimpleNamespace(config=config.model)  # the EOS id comes from here
    return prompt_tokenizer(load_tokenizer(path), holder)


class DownstreamEval(Callback):
    def __init__(
        self, tokenizer, engine, logger: MetricsLogger, config: TrainConfig, dist: DistInfo
    ):
        self.tokenizer, self.engine, self.logger, self.dist = tokenizer, engine, logger, dist
        self.eval = config.eval

    def on_step_end(self, end: StepEnd) -> None:
        if self.eval.interval and end.step % self.eval.interval == 0:
            self.evaluate(end.step)

    def evaluate(self, step: int) -> None:
        from olmo.eval import in_loop

        e, started = self.eval, time.monotonic()
        self.announce(EVALUATING)
        metrics = in_loop(
            self.engine.module,
            self.tokenizer,
            tasks=e.tasks[0] if e.tasks == ["core"] else e.tasks,
            limit=e.limit,
            batch_size=e.batch_size,
            device=self.dist.device,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
        )
        self.engine.train()
        self.announce(TRAINING)
        self.logger.log({"step": step, **metrics})
        if self.dist.is_main:
            heads = {k.split("/")[1]: v for k, v in metrics.items() if k.endswith("/headline")}
            log.info(
                "step %d downstream (%.0fs): %s", step, time.monotonic() - started,
                ", ".join(f"{t} {100 * v:.1f}" for t, v in heads.items()),
            )  # fmt: skip
