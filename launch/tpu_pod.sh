#!/usr/bin/env bash
# Run one synth-jax command on every worker of a Cloud TPU VM pod slice.
#
#   launch/tpu_pod.sh --name frac-v4-32 --zone us-central2-b --accelerator v4-32 \
#       --bucket my-bucket --delete -- \
#       synth-jax pretrain --config configs/pretrain/onepfrac_vit_tiny.py \
#       --workdir /mnt/gcs/my-bucket/runs/onepfrac_vit_tiny
#
# Steps (each printed before it runs; --dry-run prints them and runs nothing but step 0):
#   0. pre-flight, here and free: `synth-jax compile` compiles a pretrain command's config for
#      the --accelerator slice (libtpu: pip install 'synth_jax[tpu]'); a config that does not
#      fit in the chips' memory, or cannot shard on the slice, stops here (--no-preflight skips);
#   1. create the TPU VM slice, or reuse it when one of that name exists (--spot for spot VMs);
#   2. copy this checkout to all workers and pip-install it with jax[tpu] (--skip-install to
#      reuse what is there, --pip SPEC to install a released package instead of this checkout);
#   3. with --bucket B, mount gs://B at /mnt/gcs/B on all workers (gcsfuse), so the workdir, its
#      checkpoints and results outlive the VMs;
#   4. run the command on --worker=all; JAX finds the other workers itself on a TPU slice, and
#      SYNTH_JAX_DISTRIBUTED=auto tells the trainer to call jax.distributed.initialize();
#   5. --stop or --delete the slice afterwards (default: leave it running for the next command).
# Re-running the same command resumes from the workdir's last checkpoint.
set -euo pipefail

usage() {
  sed -n '2,21p' "$0"
  cat <<'EOF'

usage: launch/tpu_pod.sh --name NAME --zone ZONE --accelerator TYPE [--version V] [--project P]
                         [--spot] [--bucket B] [--pip SPEC | --skip-install] [--stop | --delete]
                         [--no-preflight] [--dry-run] [-- synth-jax VERB args...]
EOF
}

die() {
  echo "launch/tpu_pod.sh: error: $*" >&2
  exit 2
}

name=""
zone=""
accelerator=""
version="tpu-ubuntu2204-base"
project=""
spot=0
bucket=""
pip_spec=""
skip_install=0
after="keep"
dry_run=0
preflight=1

need_value() { [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) need_value "$@"; name="$2"; shift 2 ;;
    --zone) need_value "$@"; zone="$2"; shift 2 ;;
    --accelerator) need_value "$@"; accelerator="$2"; shift 2 ;;
    --version) need_value "$@"; version="$2"; shift 2 ;;
    --project) need_value "$@"; project="$2"; shift 2 ;;
    --spot) spot=1; shift ;;
    --bucket) need_value "$@"; bucket="${2#gs://}"; bucket="${bucket%/}"; shift 2 ;;
    --pip) need_value "$@"; pip_spec="$2"; shift 2 ;;
    --skip-install) skip_install=1; shift ;;
    --stop) after="stop"; shift ;;
    --delete) after="delete"; shift ;;
    --dry-run) dry_run=1; shift ;;
    --no-preflight) preflight=0; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) die "unknown option '$1' (the synth-jax command goes after --; see --help)" ;;
  esac
done

[[ -n "$name" ]] || die "--name is required (the TPU VM name, e.g. frac-v4-32)"
[[ "$name" =~ ^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$ ]] \
  || die "--name '$name': use lowercase letters, digits and dashes, starting with a letter"
[[ -n "$zone" ]] || die "--zone is required (e.g. us-central2-b)"
[[ "$zone" =~ ^[a-z]+-[a-z]+[0-9]+-[a-z]$ ]] \
  || die "--zone '$zone' is not a zone such as us-central2-b"
[[ -n "$accelerator" ]] || die "--accelerator is required (e.g. v4-32, v5litepod-16, v6e-64)"
[[ "$accelerator" =~ ^v[0-9]+[a-z]*-[0-9]+$ ]] \
  || die "--accelerator '$accelerator' is not a TPU type such as v4-32, v5litepod-16 or v6e-64"
if [[ -n "$bucket" && ! "$bucket" =~ ^[a-z0-9][-_.a-z0-9]{1,221}[a-z0-9]$ ]]; then
  die "--bucket '$bucket' is not a bucket name"
fi
if [[ -n "$pip_spec" && "$skip_install" == 1 ]]; then
  die "--pip and --skip-install exclude each other"
fi
if [[ $# -gt 0 ]]; then
  [[ "$1" == synth-jax ]] || die "the command after -- should start with synth-jax, got '$1'"
  if [[ -n "$bucket" && " $* " != *"/mnt/gcs/$bucket"* ]]; then
    echo "launch/tpu_pod.sh: warning: the command names no path under /mnt/gcs/$bucket;" \
      "a workdir on a worker's local disk is lost with the VM" >&2
  fi
elif [[ "$after" == keep ]]; then
  die "nothing to do: give a command after --, or --stop / --delete"
fi
if [[ "$dry_run" == 0 ]]; then
  command -v gcloud >/dev/null 2>&1 || die "gcloud is not installed (https://cloud.google.com/sdk)"
fi

tpu=(gcloud compute tpus tpu-vm)
where=(--zone "$zone")
[[ -z "$project" ]] || where+=(--project "$project")
here="$(cd "$(dirname "$0")/.." && pwd)"

show() {  # print a command as a shell would read it back
  local word line="+"
  for word in "$@"; do
    if [[ "$word" =~ ^[-_./:=@a-zA-Z0-9]+$ ]]; then
      line+=" $word"
    else
      line+=" '${word//\'/\'\\\'\'}'"
    fi
  done
  echo "$line"
}

step() {  # print a command, then run it unless this is a dry run
  show "$@"
  [[ "$dry_run" == 1 ]] || "$@"
}

on_all_workers() {  # run a shell command line on every worker
  step "${tpu[@]}" ssh "$name" "${where[@]}" --worker=all --command "$1"
}

# 0. Pre-flight: compile the command's training step for the slice, on this machine.
if [[ $# -gt 0 && "$preflight" == 1 ]]; then
  if [[ "${2:-}" != pretrain ]]; then
    echo "launch/tpu_pod.sh: pre-flight compiles pretrain commands only; skipped for '${2:-}'"
  else
    compile=(synth-jax compile --topology "$accelerator"
      --out "${TMPDIR:-/tmp}/synth_jax-$name-preflight.json")
    args=("${@:3}")
    for ((i = 0; i < ${#args[@]}; i++)); do  # the command's --config and --config.KEY=VALUE
      arg="${args[$i]}"
      if [[ "$arg" == --config || ("$arg" == --config.* && "$arg" != *=*) ]]; then
        compile+=("$arg" "${args[$((i + 1))]:-}")
        i=$((i + 1))
      elif [[ "$arg" == --config=* || "$arg" == --config.*=* ]]; then
        compile+=("$arg")
      fi
    done
    command -v synth-jax >/dev/null 2>&1 \
      || die "pre-flight needs synth-jax here (pip install -e '.[tpu]'), or pass --no-preflight"
    echo "launch/tpu_pod.sh: pre-flight (here, before anything is created):"
    status=0
    show "${compile[@]}"
    "${compile[@]}" || status=$?
    if [[ "$status" != 0 ]]; then
      echo "launch/tpu_pod.sh: error: pre-flight failed (status $status): the config does not" \
        "fit or cannot run on $accelerator; nothing was created (--no-preflight skips it)" >&2
      exit "$status"
    fi
  fi
fi

# 1. Create or reuse.
if [[ "$dry_run" == 0 ]] && "${tpu[@]}" describe "$name" "${where[@]}" >/dev/null 2>&1; then
  echo "launch/tpu_pod.sh: reusing TPU VM $name"
else
  create=("${tpu[@]}" create "$name" "${where[@]}" --accelerator-type "$accelerator"
    --version "$version")
  [[ "$spot" == 0 ]] || create+=(--spot)
  if [[ $# -gt 0 ]]; then
    [[ "$dry_run" == 0 ]] || echo "launch/tpu_pod.sh: creates $name unless it exists already"
    step "${create[@]}"
  fi
fi

# 2. Install.
if [[ $# -gt 0 && "$skip_install" == 0 ]]; then
  if [[ -n "$pip_spec" ]]; then
    on_all_workers "pip install -q 'jax[tpu]' $(printf '%q' "$pip_spec")"
  else
    archive="${TMPDIR:-/tmp}/synth_jax-$name.tar.gz"
    if [[ "$dry_run" == 1 ]]; then
      echo "+ tar czf $archive -C $here (tracked files of this checkout)"
    else
      git -C "$here" ls-files -z | tar czf "$archive" -C "$here" --null -T -
    fi
    step "${tpu[@]}" scp "$archive" "$name:synth_jax.tar.gz" "${where[@]}" --worker=all
    on_all_workers "mkdir -p ~/synth_jax && tar xzf ~/synth_jax.tar.gz -C ~/synth_jax \
&& pip install -q 'jax[tpu]' -e ~/synth_jax"
  fi
fi

# 3. Mount the bucket.
if [[ $# -gt 0 && -n "$bucket" ]]; then
  on_all_workers "sudo mkdir -p /mnt/gcs/$bucket && sudo chown \$USER /mnt/gcs/$bucket \
&& (mountpoint -q /mnt/gcs/$bucket || gcsfuse --implicit-dirs $bucket /mnt/gcs/$bucket)"
fi

# 4. Run on every worker. JAX reads the slice's hosts from the TPU metadata;
# SYNTH_JAX_DISTRIBUTED=auto only says "this is a multi-host run: initialise jax.distributed".
if [[ $# -gt 0 ]]; then
  remote="cd ~/synth_jax 2>/dev/null || cd ~;"
  remote+=" export SYNTH_JAX_DISTRIBUTED=auto PATH=\$HOME/.local/bin:\$PATH;"
  remote+="$(printf ' %q' "$@")"
  status=0
  on_all_workers "$remote" || status=$?
  if [[ "$status" != 0 ]]; then
    echo "launch/tpu_pod.sh: the command failed on a worker (status $status)" >&2
  fi
else
  status=0
fi

# 5. Stop or delete.
case "$after" in
  stop) step "${tpu[@]}" stop "$name" "${where[@]}" ;;
  delete) step "${tpu[@]}" delete "$name" "${where[@]}" --quiet ;;
  keep) [[ $# -eq 0 ]] || echo "launch/tpu_pod.sh: $name is still running (delete it with:" \
    "launch/tpu_pod.sh --name $name --zone $zone --accelerator $accelerator --delete)" ;;
esac
[[ "$dry_run" == 0 ]] || echo "launch/tpu_pod.sh: dry run, nothing done"
exit "$status"
