# Shared by admin/run-tests and admin/quickstart (sourced, not run).
# ensure_venv: a virtualenv in .venv with Flocker installed in development
# mode; reinstalled only when setup.py changes, so a second run is fast.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"

ensure_system_deps() {
  if [ "$(id -u)" = 0 ]; then
    "$ROOT/admin/install-system-deps"
  else
    echo "not root: skipping admin/install-system-deps (ZFS and Docker tests will skip)" >&2
  fi
}

ensure_venv() {
  local stamp="$VENV/.flocker-installed"
  local want
  want=$(cat "$ROOT/setup.py" | sha256sum | cut -d' ' -f1)
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
  fi
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "installing Flocker and its dependencies into .venv"
    "$VENV/bin/pip" install -q --disable-pip-version-check -e "$ROOT[dev]" >"$VENV/pip.log" 2>&1 \
      || { tail -20 "$VENV/pip.log" >&2; echo "pip install failed, see $VENV/pip.log" >&2; exit 1; }
    echo "$want" > "$stamp"
  fi
  export PATH="$VENV/bin:$PATH"
}
