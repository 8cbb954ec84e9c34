"""The shell entrypoints of the trainer and rotation containers.

A container's ``command`` is its PID 1, and the kernel gives PID 1 no default action for
SIGTERM: a program without a handler would ignore pod deletion until SIGKILL. Both scripts trap
SIGTERM and forward it to their child; the trainer's also turns "stopped while training" into
exit code ``EXIT_PREEMPTED`` (torchrun itself exits 1 whatever its workers' codes), the
rotation's keeps the last lines of ``olmo-ckpt rotate``'s output as the termination message.
"""

from __future__ import annotations

from olmo_operator import contract as c

PREEMPTION_AWARE_ENTRYPOINT = f"""\
# Run "$@" (torchrun) as a child; forward SIGTERM to it; report "preempted" with exit code
# {c.EXIT_PREEMPTED} when the pod was told to stop and the trainer did not finish cleanly.
# torchrun itself exits 1 whatever its workers' codes, so the pod's exit code says it instead.
term=0
trap 'term=1; kill -TERM "$child" 2>/dev/null' TERM INT
"$@" &
child=$!
while :; do
  wait "$child"
  rc=$?
  # a trapped signal interrupts wait (rc > 128) while the child is still running or unreaped
  if [ "$term" = 1 ] && [ "$rc" -gt 128 ] && kill -0 "$child" 2>/dev/null; then continue; fi
  break
done
if [ "$term" = 1 ] && [ "$rc" -ne 0 ]; then exit {c.EXIT_PREEMPTED}; fi
exit "$rc"
"""

ROTATION_ENTRYPOINT = """\
# Run "$@" (olmo-ckpt rotate) as a child and keep the last lines of its output (the summary) as
# the container's termination message. sh is PID 1 here, and PID 1 ignores a SIGTERM it has no
# trap for: forward SIGTERM (and SIGINT) to the child, which stops at once (exit 143).
log=$(mktemp) || exec "$@"  # no writable $TMPDIR: no termination message, "$@" as PID 1
term=0 child=
trap 'term=1; kill -TERM "$child" 2>/dev/null' TERM INT
"$@" >"$log" 2>&1 &
child=$!
if [ "$term" = 1 ]; then kill -TERM "$child" 2>/dev/null; fi  # signalled before $child was set
while :; do
  wait "$child"
  rc=$?
  # a trapped signal interrupts wait (rc > 128) while the child is still running or unreaped
  if [ "$rc" -gt 128 ] && kill -0 "$child" 2>/dev/null; then continue; fi
  break
done
cat "$log"
summary=$(tail -n 20 "$log")
printf '%s\\n' "$summary" > /dev/termination-log 2>/dev/null || true
rm -f "$log"
exit "$rc"
"""
