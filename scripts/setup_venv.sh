#!/usr/bin/env bash
# One-step setup for machines without a ROS 2 distro (Debian/Ubuntu):
#   system packages -> .venv with ROS 2 from PyPI wheels -> vision_msgs fallback and
#   edge_vision interfaces built with CMake into the venv -> editable install of the package.
# Idempotent: re-running only redoes what changed. Usage: scripts/setup_venv.sh [--no-apt]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${EDGE_VISION_VENV:-$ROOT/.venv}"
BUILD="$ROOT/build/venv"
PYTHON="${PYTHON:-python3}"
WITH_APT=1
[[ "${1:-}" == "--no-apt" ]] && WITH_APT=0

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# --- system packages --------------------------------------------------------------------
if [[ $WITH_APT == 1 ]] && command -v apt-get >/dev/null; then
  mapfile -t wanted < <(grep -hv '^\s*#' "$ROOT"/scripts/apt-packages*.txt | awk 'NF {print $1}' | sort -u)
  missing=()
  for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if ((${#missing[@]})); then
    SUDO=""; [[ $(id -u) != 0 ]] && SUDO="sudo"
    log "apt-get install ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi

# --- virtual environment and Python packages ---------------------------------------------
if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
stamp="$VENV/.edge_vision_requirements"
reqs=("$ROOT"/requirements/*.txt)
if [[ ! -f "$stamp" ]] || [[ -n "$(find "${reqs[@]}" -newer "$stamp")" ]]; then
  log "pip install (ROS 2 wheels, runtime and test requirements)"
  "$PY" -m pip install -q --disable-pip-version-check $(printf -- '-r %q ' "${reqs[@]}")
  # Packages whose declared dependencies would break the rest (see requirements/models.txt).
  mapfile -t nodeps < <(sed -n 's/^#no-deps: *//p' "${reqs[@]}")
  if ((${#nodeps[@]})); then
    "$PY" -m pip install -q --disable-pip-version-check --no-deps "${nodeps[@]}"
  fi
  touch "$stamp"
fi

# --- interfaces: vision_msgs fallback, then edge_vision msg/srv --------------------------
# The wheels ship CMake configs but no environment hooks: point CMake at the venv prefix.
export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
cmake_build() {  # name source_dir [cmake args...]
  local name=$1 src=$2; shift 2
  local inputs_hash
  inputs_hash=$(cd "$src" && find . -maxdepth 2 \( -name '*.msg' -o -name '*.srv' -o -name CMakeLists.txt -o -name package.xml \) -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
  local stamp="$VENV/.edge_vision_built_$name"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$inputs_hash" ]]; then
    return
  fi
  log "building interfaces: $name"
  cmake -S "$src" -B "$BUILD/$name" -G "Unix Makefiles" -Wno-dev \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$VENV" \
    -DPython3_EXECUTABLE="$PY" -DPython3_FIND_VIRTUALENV=ONLY -DBUILD_TESTING=OFF "$@" >"$BUILD-$name.log" 2>&1 \
    && cmake --build "$BUILD/$name" -j"$(nproc)" >>"$BUILD-$name.log" 2>&1 \
    && cmake --install "$BUILD/$name" >>"$BUILD-$name.log" 2>&1 \
    || { echo "interface build of $name failed; log: $BUILD-$name.log" >&2; tail -30 "$BUILD-$name.log" >&2; exit 1; }
  echo "$inputs_hash" >"$stamp"
}
mkdir -p "$BUILD"
if [[ -f "$VENV/.edge_vision_built_vision_msgs" ]] || ! "$PY" -c 'import vision_msgs.msg' 2>/dev/null; then
  cmake_build vision_msgs "$ROOT/interfaces/vision_msgs"
fi
cmake_build edge_vision "$ROOT" -DEDGE_VISION_INSTALL_PYTHON=OFF \
  -DPYTHON_INSTALL_DIR=lib/edge_vision_interfaces

# --- the Python package (editable: edits in the checkout take effect at once) ------------
if ! "$PY" -c 'import edge_vision.cli.main' 2>/dev/null || [[ "$ROOT/pyproject.toml" -nt "$VENV/.edge_vision_pkg" ]]; then
  log "pip install -e ."
  "$PY" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e "$ROOT"
  touch "$VENV/.edge_vision_pkg"
fi

# --- browser test driver: playwright-core from npm (package.json; Chromium is the apt one) ---
# Without Node.js 20+ and npm the browser tests skip themselves; nothing else needs node.
if command -v npm >/dev/null && node -e 'process.exit(parseInt(process.versions.node) >= 20 ? 0 : 1)'; then
  lock_hash=$(sha256sum "$ROOT/package-lock.json" | cut -c1-16)
  stamp="$ROOT/node_modules/.edge_vision_npm"  # inside node_modules: `npm ci` or rm resets it
  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$lock_hash" ]]; then
    log "npm ci (playwright-core, drives Chromium in the browser tests)"
    (cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$lock_hash" >"$stamp"
  fi
else
  log "no Node.js 20+ with npm: browser tests will be skipped"
fi

# `source .venv/bin/activate` users get the venv's ament index (the wheels ship no setup.bash).
if ! grep -q '# edge_vision: ament index' "$VENV/bin/activate"; then
  printf '\n# edge_vision: ament index of the ROS 2 wheels\nexport AMENT_PREFIX_PATH="%s${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"\n' "$VENV" >>"$VENV/bin/activate"
fi
log "ready: $VENV"
