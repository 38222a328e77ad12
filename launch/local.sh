#!/usr/bin/env bash
# Run one synth-jax command as N cooperating JAX processes on this machine, over loopback.
#
# This is the multi-host code path (jax.distributed.initialize, one process per host) on one
# machine: each process gets SYNTH_JAX_COORDINATOR, SYNTH_JAX_NUM_PROCESSES and
# SYNTH_JAX_PROCESS_ID, exactly as launch/slurm.sbatch sets them on a cluster. On a CPU-only
# machine, --cpu-devices K gives each process K fake CPU devices, so a 2-process x 2-device run
# is a 4-device mesh.
#
#   launch/local.sh --processes 2 --cpu-devices 2 -- \
#       synth-jax pretrain --config configs/pretrain/cpu_tiny.py --workdir runs/local2
#
# Process 0's output goes to the terminal; every process also logs to LOGDIR/process_<i>.log
# (default: <workdir>/logs when the command has --workdir, else ./logs). If any process fails,
# the others are stopped and the script exits with the failing process's status.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: launch/local.sh [--processes N] [--cpu-devices K] [--port PORT] [--log-dir DIR] [--dry-run]
                       -- synth-jax VERB [args...]

  --processes N     number of JAX processes to start (default 2)
  --cpu-devices K   give each process K fake CPU devices (sets JAX_PLATFORMS=cpu); default: leave
                    the platform alone (e.g. one GPU per process via CUDA_VISIBLE_DEVICES=i
                    with --gpu-per-process)
  --gpu-per-process pin process i to GPU i (CUDA_VISIBLE_DEVICES=i)
  --port PORT       coordinator port on 127.0.0.1 (default 12355)
  --log-dir DIR     where process_<i>.log go (default: WORKDIR/logs, else ./logs)
  --dry-run         print what would run, run nothing
EOF
}

die() {
  echo "launch/local.sh: error: $*" >&2
  exit 2
}

processes=2
cpu_devices=""
gpu_per_process=0
port=12355
log_dir=""
dry_run=0

while [[ $# -gt 0 ]]; do
  case "$1" in
    --processes) [[ $# -ge 2 ]] || die "--processes needs a value"; processes="$2"; shift 2 ;;
    --cpu-devices) [[ $# -ge 2 ]] || die "--cpu-devices needs a value"; cpu_devices="$2"; shift 2 ;;
    --gpu-per-process) gpu_per_process=1; shift ;;
    --port) [[ $# -ge 2 ]] || die "--port needs a value"; port="$2"; shift 2 ;;
    --log-dir) [[ $# -ge 2 ]] || die "--log-dir needs a value"; log_dir="$2"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) die "unknown option '$1' (the command to run goes after --; see --help)" ;;
  esac
done

[[ $# -gt 0 ]] || die "no command given: put it after --, e.g. -- synth-jax pretrain --config ..."
[[ "$processes" =~ ^[1-9][0-9]*$ ]] \
  || die "--processes must be a positive integer, got '$processes'"
if [[ -n "$cpu_devices" && ! "$cpu_devices" =~ ^[1-9][0-9]*$ ]]; then
  die "--cpu-devices must be a positive integer, got '$cpu_devices'"
fi
if [[ -n "$cpu_devices" && "$gpu_per_process" == 1 ]]; then
  die "--cpu-devices and --gpu-per-process exclude each other: pick CPU or GPU"
fi
if ! [[ "$port" =~ ^[0-9]+$ ]] || ((port < 1024 || port > 65535)); then
  die "--port must be a number in 1024..65535, got '$port'"
fi
command -v "$1" >/dev/null 2>&1 \
  || die "'$1' is not on PATH (install the package: pip install -e .)"

# The log directory defaults to the command's workdir, so logs sit next to the run they describe.
if [[ -z "$log_dir" ]]; then
  log_dir="./logs"
  args=("$@")
  for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[$i]}" in
      --workdir) ((i + 1 < ${#args[@]})) && log_dir="${args[$((i + 1))]}/logs" ;;
      --workdir=*) log_dir="${args[$i]#--workdir=}/logs" ;;
    esac
  done
fi

process_env() {  # the environment of process $1, as NAME=VALUE words
  local id="$1"
  local env=("SYNTH_JAX_COORDINATOR=127.0.0.1:$port" "SYNTH_JAX_NUM_PROCESSES=$processes"
    "SYNTH_JAX_PROCESS_ID=$id")
  if [[ -n "$cpu_devices" ]]; then
    env+=("JAX_PLATFORMS=cpu" "XLA_FLAGS=--xla_force_host_platform_device_count=$cpu_devices")
  fi
  if [[ "$gpu_per_process" == 1 ]]; then
    env+=("CUDA_VISIBLE_DEVICES=$id")
  fi
  printf '%s\n' "${env[@]}"
}

echo "launch/local.sh: $processes processes, coordinator 127.0.0.1:$port, logs in $log_dir"
for ((id = 0; id < processes; id++)); do
  mapfile -t env_words < <(process_env "$id")
  printf '  process %d: env %s' "$id" "${env_words[*]}"
  printf ' %q' "$@"
  printf ' > %q\n' "$log_dir/process_$id.log"
done
if [[ "$dry_run" == 1 ]]; then
  echo "launch/local.sh: dry run, nothing started"
  exit 0
fi

mkdir -p "$log_dir"
pids=()
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  # Each process leads its own process group (set -m below): stop it with its children.
  for pid in "${pids[@]+"${pids[@]}"}"; do
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

set -m
for ((id = 0; id < processes; id++)); do
  mapfile -t env_words < <(process_env "$id")
  log="$log_dir/process_$id.log"
  : >"$log" # exists at once, even if the tee behind it never starts (an early failure)
  if [[ "$id" == 0 ]]; then
    env "${env_words[@]}" "$@" > >(tee "$log") 2>&1 &
  else
    env "${env_words[@]}" "$@" >"$log" 2>&1 &
  fi
  pids+=("$!")
done

# Wait for the processes one by one; a failure stops the rest (its peers would hang in a
# collective). `wait -n -p` needs bash >= 5.1.
status=0
running=("${pids[@]}")
while ((${#running[@]} > 0)); do
  finished_status=0
  finished_pid=""
  wait -n -p finished_pid "${running[@]}" || finished_status=$?
  still=()
  for pid in "${running[@]}"; do
    [[ "$pid" == "$finished_pid" ]] || still+=("$pid")
  done
  running=("${still[@]+"${still[@]}"}")
  if [[ "$finished_status" != 0 ]]; then
    status="$finished_status"
    echo "launch/local.sh: a process exited with status $status; stopping the others" \
      "(see $log_dir/process_*.log)" >&2
    break
  fi
done
if [[ "$status" == 0 ]]; then
  pids=()
  echo "launch/local.sh: all $processes processes finished"
fi
exit "$status"
