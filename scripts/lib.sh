#!/usr/bin/env bash
# scripts/lib.sh — sourced by scripts/bootstrap and scripts/stack.
# Defines paths, ports and small helpers; has no side effects besides
# variable and function definitions.
#
# Environment overrides:
#   NUDGEL_STACK_DIR                   state dir (default: <repo>/.stack, git-ignored)
#   NUDGEL_STACK_KAFKA_PORT            Kafka PLAINTEXT port (default 59092)
#   NUDGEL_STACK_KAFKA_CONTROLLER_PORT Kafka KRaft controller port (default 59093)
#   NUDGEL_STACK_KAFKA_SASL_PORT       Kafka SASL_PLAINTEXT (PLAIN) port (default 29094)
#   NUDGEL_STACK_PG_PORT               Postgres port (default 55432)
#   NUDGEL_TOOLS_BIN                   where helm and promtool are installed (default ~/go/bin)

# Variables here are used by the scripts that source this file.
# shellcheck disable=SC2034

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${NUDGEL_STACK_DIR:-$REPO/.stack}"

KAFKA_VERSION=3.9.1
KAFKA_PORT="${NUDGEL_STACK_KAFKA_PORT:-59092}"
KAFKA_CONTROLLER_PORT="${NUDGEL_STACK_KAFKA_CONTROLLER_PORT:-59093}"
# Below Linux's ephemeral range (32768-60999): a client's local port of the moment cannot
# hold it when a test restarts Kafka (59094 once did, and the broker could not bind).
KAFKA_SASL_PORT="${NUDGEL_STACK_KAFKA_SASL_PORT:-29094}"
PG_PORT="${NUDGEL_STACK_PG_PORT:-55432}"

KAFKA_DIR="$STATE/kafka"
KAFKA_LIBS="$KAFKA_DIR/libs"
KAFKA_JAR="$KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar"
VENV="$STATE/venv"

# Go-built tools of the deployment tests (scripts/bootstrap): outside the
# clone by default so fresh clones share them.
TOOLS_BIN="${NUDGEL_TOOLS_BIN:-$HOME/go/bin}"
HELM_VERSION=v4.3.2
PROMTOOL_VERSION=v0.316.0

# Log prefix; callers set SAY_PREFIX (e.g. "stack", "bootstrap").
SAY_PREFIX="${SAY_PREFIX:-nudgel}"
say() { printf '[%s] %s\n' "$SAY_PREFIX" "$*" >&2; }
die() { say "error: $*"; exit 1; }

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# Run a command as root: directly when root, via sudo when available.
as_root() {
  if is_root; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root (or sudo) to run: $*"
  fi
}

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# True when process $1 exists and is not a zombie.
pid_alive() {
  local stat
  stat="$(ps -o stat= -p "$1" 2>/dev/null)" || return 1
  [[ -n "$stat" && "$stat" != Z* ]]
}

# True when the pid stored (first line) in file $1 is a live process.
pidfile_alive() {
  local pid
  [[ -s "$1" ]] || return 1
  pid="$(head -n 1 "$1")"
  [[ "$pid" =~ ^[0-9]+$ ]] && pid_alive "$pid"
}
