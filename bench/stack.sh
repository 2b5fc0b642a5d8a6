# bench/stack.sh — sourced by the bench/*/run scripts (after they define say()).
#
# bench_stack_up starts the local stack (scripts/stack) only when none of it
# runs, and sets started_stack=1 so the caller's exit trap stops it again.
# When one service is up and the other is down, someone else owns the stack
# and is restarting the other (tests that stop Kafka or Postgres): wait for it
# (up to 180 s) rather than start it, and never stop what was running.

started_stack=0
bench_stack_up() {
  scripts/stack status >/dev/null 2>&1 && return 0
  if scripts/stack status 2>/dev/null | grep -q ': *up'; then
    say "the stack is partly down (someone else's); waiting up to 180 s for it"
    for _ in $(seq 180); do scripts/stack status >/dev/null 2>&1 && return 0; sleep 1; done
    scripts/stack status >&2
    return 1
  fi
  scripts/stack up
  started_stack=1
}
