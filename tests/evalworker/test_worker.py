"""``olmo-eval watch`` without its CLI: ``worker.watch`` with settings and an evaluator."""

from __future__ import annotations

import socket

import pytest

from olmo.checkpoints import layout
from olmo_evalworker import records
from olmo_evalworker.worker import HttpSettings, UsageError, WatchSettings, watch

from .conftest import make_checkpoint


def test_watch_once_evaluates_every_checkpoint_and_exits_0(run_dir, evaluator):
    for step in (20, 10):
        make_checkpoint(run_dir, step)
    assert watch(WatchSettings(run_dir, once=True, http=None), evaluator) == 0
    assert evaluator.calls == [10, 20]
    assert all(layout.is_evaluated(layout.final_dir(run_dir, s)) for s in (10, 20))
    assert [m["step"] for m in records.read_metrics(run_dir)] == [10, 20]


def test_a_port_that_cannot_be_bound_is_a_usage_error(run_dir, evaluator):
    make_checkpoint(run_dir, 10)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        http = HttpSettings(host="127.0.0.1", port=taken.getsockname()[1])
        with pytest.raises(UsageError, match=r"cannot serve on 127\.0\.0\.1:"):
            watch(WatchSettings(run_dir, once=True, http=http), evaluator)
    assert evaluator.calls == []  # the loop never started
