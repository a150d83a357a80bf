#!/usr/bin/env bash
# videogen: the one entry point. The first call of any command creates .venv and installs the
# project (a few seconds once done). See `./run.sh --help`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
TORCH_VERSION="${VIDEOGEN_TORCH_VERSION:-2.13.0}"

has_cuda() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU; }

pick_python() {
  for candidate in python3.11 python3.12 python3.10 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "error: videogen needs Python >= 3.10 (none found on PATH)" >&2
  exit 2
}

# The install is redone only when pyproject.toml (or the torch choice) changes.
install_stamp() {
  { cat "$ROOT/pyproject.toml"; echo "torch=$TORCH_VERSION cuda=$(has_cuda && echo 1 || echo 0)"; } | sha256sum | cut -d' ' -f1
}

ensure_env() {
  local stamp_file="$VENV/.videogen-install" want
  want="$(install_stamp)"
  if [ -x "$PY" ] && [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$want" ]; then
    return 0
  fi
  echo "[run.sh] setting up $VENV (once) ..." >&2
  [ -x "$PY" ] || "$(pick_python)" -m venv "$VENV"
  "$PY" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  # torch first, pinned: on a machine without CUDA this must be the CPU build (a local wheel when the
  # machine has one), never a newer torch with gigabytes of CUDA packages.
  if ! "$PY" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
    if has_cuda; then
      "$PY" -m pip install -q "torch==$TORCH_VERSION"
    else
      "$PY" -m pip install -q "torch==$TORCH_VERSION" ${VIDEOGEN_TORCH_INDEX:+--index-url "$VIDEOGEN_TORCH_INDEX"}
    fi
  fi
  # Every later install is constrained to the torch we have, so no dependency can pull another.
  echo "torch==$TORCH_VERSION" >"$VENV/constraints.txt"
  "$PY" -m pip install -q -c "$VENV/constraints.txt" -e "$ROOT[dev]"
  if ! has_cuda; then
    # DeepSpeed's CPU backend JIT-builds a shared-memory comm op at its first init. Build it once
    # here, so no training process (or test that kills one) can die holding the build lock.
    DS_ACCELERATOR=cpu "$PY" -c "from deepspeed.accelerator import get_accelerator as g; b = g().create_op_builder('ShareMemCommBuilder'); b and b.load(verbose=False)" >/dev/null 2>&1 ||
      echo "[run.sh] note: DeepSpeed's CPU comm op did not build; DeepSpeed falls back to gloo" >&2
  fi
  echo "$want" >"$stamp_file"
  echo "[run.sh] environment ready" >&2
}

usage() {
  ensure_env
  "$PY" -m videogen --help
}

# Without a GPU, DeepSpeed runs on its CPU accelerator.
has_cuda || export DS_ACCELERATOR="${DS_ACCELERATOR:-cpu}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# JIT-built extensions live with this checkout's environment, not in a cache shared with others.
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$VENV/torch_extensions}"
cd "$ROOT"

command="${1:-}"
case "$command" in
  "" | -h | --help | help)
    usage
    [ -n "$command" ] || exit 2
    ;;
  setup)
    [ "${2:-}" = "--help" ] && { echo "usage: run.sh setup   create .venv and install videogen with its dev tools"; exit 0; }
    ensure_env
    "$PY" -c "import torch, videogen; print(f'videogen {videogen.__version__}, torch {torch.__version__}')"
    ;;
  test)
    shift
    ensure_env
    exec "$PY" -m pytest "$@"
    ;;
  train)
    shift
    ensure_env
    # Launcher options (--num-gpus, --num-nodes, --hostfile, --master-port) go to the deepspeed
    # launcher; everything else to `python -m videogen train`.
    launcher=() rest=()
    while [ $# -gt 0 ]; do
      case "$1" in
        --num-gpus | --num-nodes | --hostfile | --master-port | --master-addr)
          launcher+=("--${1#--}" "$2"); shift 2 ;;
        --num-gpus=* | --num-nodes=* | --hostfile=* | --master-port=* | --master-addr=*)
          launcher+=("$1"); shift ;;
        *) rest+=("$1"); shift ;;
      esac
    done
    if [ ${#launcher[@]} -eq 0 ]; then
      exec "$PY" -m videogen train "${rest[@]}"
    fi
    # the deepspeed launcher spells these with underscores
    ds_args=()
    for a in "${launcher[@]}"; do ds_args+=("$(echo "$a" | sed -e 's/^--num-gpus/--num_gpus/' -e 's/^--num-nodes/--num_nodes/' -e 's/^--master-port/--master_port/' -e 's/^--master-addr/--master_addr/')"); done
    # Under a supervisor: SIGTERM / Ctrl-C reach every rank once (each saves a checkpoint and exits), and
    # no process outlives the command (the deepspeed runner alone leaves its ranks running when killed).
    exec "$PY" -m videogen.launcher "$VENV/bin/deepspeed" "${ds_args[@]}" --no_local_rank --module videogen train "${rest[@]}"
    ;;
  *)
    ensure_env
    exec "$PY" -m videogen "$@"
    ;;
esac
