# Shared set-up for ci/main.sh and ci/test.sh: system packages, Python packages, the build.
# Idempotent: each step is skipped when what it provides is already there.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PIP_DISABLE_PIP_VERSION_CHECK=1

log() { printf '\n==> %s\n' "$*"; }

apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        log "apt-get install ${missing[*]}"
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

python_setup() {
    log "pip install -e .[dev] (builds the Rust extension with maturin)"
    python3 -m pip install -q -e ".[dev]" 2>&1 | grep -v "Running pip as the 'root' user" || true
    python3 -c "import raftkv._native" || { echo "the native extension did not build" >&2; exit 1; }
}
