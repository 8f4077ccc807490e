# Shared by scripts/demo and scripts/test: find Python >= 3.11, make .venv, install corral.
# Sourced, not run. Idempotent: a second run reuses .venv and skips an install that is current.

say() {
    if [ -t 2 ]; then printf '\033[1m==> %s\033[0m\n' "$*" >&2; else printf '==> %s\n' "$*" >&2; fi
}

# Run apt-get as root, through sudo when we are not root (fresh Debian/Ubuntu machines).
apt_install() {
    if ! command -v apt-get >/dev/null; then
        say "please install: $* (no apt-get here)"; return 1
    fi
    local sudo=()
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null || { say "please install as root: $*"; return 1; }
        sudo=(sudo)
    fi
    say "installing $* with apt-get"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# The browser tests (tests/browser) drive Debian's Chromium at /usr/bin/chromium through
# Playwright. Without it they are skipped locally; in CI (CI=true) they must run.
ensure_chromium() {
    [ -x /usr/bin/chromium ] && return 0
    apt_install chromium && [ -x /usr/bin/chromium ] && return 0
    if [ "${CI:-}" = true ]; then say "CI needs /usr/bin/chromium for the browser tests"; return 1; fi
    say "no /usr/bin/chromium: the browser tests will be skipped"
}

python_ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }

# Sets PYTHON to an interpreter >= 3.11.
find_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3 python3.13 python3.12 python3.11; do
        if [ -n "$candidate" ] && command -v "$candidate" >/dev/null && python_ok "$candidate"
        then PYTHON=$candidate; break; fi
    done
    if [ -z "${PYTHON:-}" ] || ! python_ok "$PYTHON"; then
        command -v python3 >/dev/null || apt_install python3
        python_ok python3 || { say "corral needs Python >= 3.11 (set PYTHON=/path/to/python)"; return 1; }
        PYTHON=python3
    fi
}

# ensure_venv TARGET: .venv exists with a working pip and `pip install -e TARGET` is current.
ensure_venv() {
    local target=$1 stamp want hash
    find_python
    if ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
        say "creating .venv with $PYTHON"
        rm -rf .venv
        if ! "$PYTHON" -m venv .venv >/dev/null 2>&1; then
            # Debian and Ubuntu ship venv's pip bootstrap in a separate package.
            rm -rf .venv
            apt_install "python$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')-venv" \
                || apt_install python3-venv
            "$PYTHON" -m venv .venv
        fi
    fi
    # Reinstall only when pyproject.toml changed; an install with the dev extra also
    # satisfies a plain one.
    hash=$(sha256sum pyproject.toml | cut -d' ' -f1)
    want="$target $hash"
    stamp=.venv/.corral-installed
    if [ -f "$stamp" ] && { [ "$(cat "$stamp")" = "$want" ] || [ "$(cat "$stamp")" = ".[dev] $hash" ]; }
    then return 0; fi
    say "installing corral ($target) into .venv"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$target"
    echo "$want" > "$stamp"
}
