#!/usr/bin/env bash
# The one test command: `bash scripts/test.sh` (CI runs exactly this through .ci/run).
#
# On a fresh Debian machine with the Rust toolchain and python3 it:
#   1. installs what the tests need when it is missing (curl, dig, python3-venv, and nginx-light
#      and openssl for templater's end-to-end tests) with apt-get,
#   2. makes a Python venv (target/pyenv) with the pinned packages of tests/requirements.txt,
#   3. runs cargo fmt --check, clippy -D warnings, build, and the Rust tests (cargo-nextest when
#      present, else cargo test), then the py-consul tests with pytest against target/debug/muster,
#   4. installs Debian's chromium and (npm ci) tests/ui's pinned playwright-core when missing, and
#      runs the web UI's browser tests with node against target/debug/muster.
# It is idempotent, prints every step, runs every step it can even after a failure (so one run
# shows all problems), and exits non-zero when any step failed.
#
# Environment: CARGO_TARGET_DIR (default ./target), MUSTER_PYENV (default $TARGET/pyenv),
# MUSTER_SKIP_LINT=1 skips fmt and clippy (for quick local runs; CI never sets it).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
PYENV="${MUSTER_PYENV:-$TARGET_DIR/pyenv}"
START=$(date +%s)

# Loopback traffic must never go through a proxy that the environment may name.
export NO_PROXY="127.0.0.1,localhost,::1${NO_PROXY:+,$NO_PROXY}"
export no_proxy="$NO_PROXY"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

FAILED=()
SUMMARY=()

say() { printf '\n==> %s\n' "$*"; }

# run NAME CMD...: runs a step, records its result and time; never exits. The step's output goes
# to the terminal and to $LOGS/NAME.log; when it fails, the lines that say why (compiler errors,
# failed tests, panics, a full disk) are kept for the summary, because CI may show only the end.
LOGS="$TARGET_DIR/test-logs"
mkdir -p "$LOGS"
WHY=()
run() {
    local name="$1"
    shift
    say "$name: $*"
    local t0 rc log
    t0=$(date +%s)
    log="$LOGS/${name// /-}.log"
    "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    local dt=$(($(date +%s) - t0))
    if [ "$rc" -eq 0 ]; then
        SUMMARY+=("ok      ${dt}s  $name")
    else
        SUMMARY+=("FAILED  ${dt}s  $name (exit $rc)")
        FAILED+=("$name")
        local line
        while IFS= read -r line; do
            WHY+=("$name: $line")
        done < <(grep -E -e '^error(\[|:)' -e 'could not compile|No space left|Killed|signal: 9' \
            -e '^ +(FAIL|TIMEOUT|SIGSEGV|SIGABRT|SIGKILL|LEAK-FAIL) ' -e 'panicked at' \
            -e '^(FAILED|ERROR) ' -e '^not ok ' "$log" | cut -c1-300 | head -n 30)
    fi
    return "$rc"
}

finish() {
    say "summary ($(($(date +%s) - START))s in all)"
    printf '    %s\n' "${SUMMARY[@]}"
    df -h "$TARGET_DIR" | tail -n 1 | awk '{ printf "    disk: %s free of %s on %s (the file system of the target dir)\n", $4, $2, $6 }'
    if [ "${#WHY[@]}" -ne 0 ]; then
        printf '\nwhy (the full logs are in %s):\n' "$LOGS"
        printf '    %s\n' "${WHY[@]}"
    fi
    if [ "${#FAILED[@]}" -ne 0 ]; then
        printf '\nscripts/test.sh: FAILED steps: %s\n' "${FAILED[*]}"
        exit 1
    fi
    printf '\nscripts/test.sh: every step succeeded\n'
    exit 0
}

# ---------------------------------------------------------------------------------------------
# 1. System packages
# ---------------------------------------------------------------------------------------------
install_system_packages() {
    local missing=()
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    command -v dig >/dev/null 2>&1 || missing+=(dnsutils)
    # templater's end-to-end tests run a real nginx (Debian installs it in /usr/sbin).
    command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
    # agent/tests/https.rs, templater/tests/tls.rs and tests/python/test_pyconsul_https.py make
    # throwaway CAs and certificates with the openssl CLI (agent/tests/https.rs drives curl too).
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
    # Debian's python3 has no ensurepip (so no `python3 -m venv`) without python3-venv.
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        missing+=(python3-venv)
    fi
    if [ "${#missing[@]}" -eq 0 ]; then
        echo "curl, dig, nginx, openssl and python3 with venv are present"
        return 0
    fi
    echo "missing: ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        echo "not root: install them with: sudo apt-get install ${missing[*]}" >&2
        return 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "no apt-get on this machine: install ${missing[*]} by hand" >&2
        return 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q || return 1
    apt-get install -y -q --no-install-recommends "${missing[@]}" || return 1
}

# ---------------------------------------------------------------------------------------------
# 2. Python venv with the pinned test requirements
# ---------------------------------------------------------------------------------------------
setup_python() {
    local req="$ROOT/tests/requirements.txt"
    local stamp="$PYENV/.requirements.sha256"
    local want
    want=$(sha256sum "$req" | cut -d' ' -f1)
    if ! "$PYENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
        echo "creating venv $PYENV"
        rm -rf "$PYENV"
        python3 -m venv "$PYENV" || return 1
    fi
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] &&
        "$PYENV/bin/python" -c 'import consul, pytest, pytest_timeout' >/dev/null 2>&1; then
        echo "venv $PYENV is up to date with tests/requirements.txt"
        return 0
    fi
    "$PYENV/bin/python" -m pip install --disable-pip-version-check --no-input -q -r "$req" ||
        return 1
    echo "$want" >"$stamp"
    "$PYENV/bin/python" -m pip list --disable-pip-version-check 2>/dev/null |
        grep -iE '^(py-consul|pytest|requests) ' || true
}

# ---------------------------------------------------------------------------------------------
# 3. Rust
# ---------------------------------------------------------------------------------------------
# Every crate of Cargo.lock (the test-only ones too) is downloaded up front, with retries, so a
# registry hiccup shows as this step and not as a build failure halfway through the tests.
export CARGO_NET_RETRY="${CARGO_NET_RETRY:-10}"
fetch_crates() {
    local attempt
    for attempt in 1 2 3; do
        cargo fetch --locked && return 0
        echo "cargo fetch failed (attempt $attempt of 3)" >&2
        sleep $((attempt * 15))
    done
    return 1
}

rust_tests() {
    if cargo nextest --version >/dev/null 2>&1; then
        local rc=0
        cargo nextest run --workspace --no-fail-fast || rc=$?
        # nextest does not run doctests.
        say "doctests: cargo test --workspace --doc"
        cargo test --workspace --doc || rc=$?
        return "$rc"
    fi
    cargo test --workspace --no-fail-fast
}

# ---------------------------------------------------------------------------------------------
# 4. Python end-to-end tests (py-consul against the built binary)
# ---------------------------------------------------------------------------------------------
python_tests() {
    local bin="$TARGET_DIR/debug/muster"
    if [ ! -x "$bin" ]; then
        echo "no $bin: the build step failed" >&2
        return 1
    fi
    local rc=0
    MUSTER_BIN="$bin" "$PYENV/bin/python" -m pytest "$ROOT/tests/python" \
        -p no:cacheprovider --timeout=120 -ra -v || rc=$?
    if [ "$rc" -eq 5 ]; then
        echo "pytest collected no tests: that is a failure" >&2
    fi
    return "$rc"
}

# ---------------------------------------------------------------------------------------------
# 5. Web UI tests: Debian's chromium driven by playwright-core (npm) against the built binary
# ---------------------------------------------------------------------------------------------
setup_ui_tests() {
    local missing=()
    [ -x /usr/bin/chromium ] || missing+=(chromium)
    command -v node >/dev/null 2>&1 || missing+=(nodejs)
    command -v npm >/dev/null 2>&1 || missing+=(npm)
    if [ "${#missing[@]}" -ne 0 ]; then
        echo "missing: ${missing[*]}"
        if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
            echo "install them with: sudo apt-get install ${missing[*]}" >&2
            return 1
        fi
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q || return 1
        apt-get install -y -q --no-install-recommends "${missing[@]}" || return 1
    fi
    local major
    major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
    if [ "$major" -lt 20 ]; then
        echo "node $(node --version 2>/dev/null) is too old: playwright-core needs node 20 or later" >&2
        return 1
    fi
    local dir="$ROOT/tests/ui"
    local stamp="$dir/node_modules/.package-lock.sha256"
    local want
    want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] &&
        [ -f "$dir/node_modules/playwright-core/package.json" ]; then
        echo "tests/ui/node_modules is up to date with package-lock.json"
        return 0
    fi
    (cd "$dir" && npm ci --no-audit --no-fund) || return 1
    echo "$want" >"$stamp"
}

ui_tests() {
    local bin="$TARGET_DIR/debug/muster"
    if [ ! -x "$bin" ]; then
        echo "no $bin: the build step failed" >&2
        return 1
    fi
    (cd "$ROOT/tests/ui" &&
        MUSTER_BIN="$bin" MUSTER_UI_OUT="$TARGET_DIR/ui-test-output" \
            timeout 600 node --test --test-concurrency=1 ui.test.mjs)
    local rc=$?
    echo "screenshots: $TARGET_DIR/ui-test-output/"
    return "$rc"
}

say "muster test run in $ROOT (target dir $TARGET_DIR, CI=${CI:-})"
cargo --version
python3 --version 2>/dev/null || true

run "system packages" install_system_packages
UI_OK=1
run "ui test packages" setup_ui_tests || UI_OK=0
PY_OK=1
run "python venv" setup_python || PY_OK=0

run "crates" fetch_crates

if [ "${MUSTER_SKIP_LINT:-}" != "1" ]; then
    run "cargo fmt" cargo fmt --all -- --check
    run "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
fi
if ! run "cargo build" cargo build --workspace; then
    finish
fi
run "rust tests" rust_tests
if [ "$PY_OK" -eq 1 ]; then
    run "python tests" python_tests
else
    SUMMARY+=("FAILED  0s  python tests (not run: no venv)")
    FAILED+=("python tests")
fi
if [ "$UI_OK" -eq 1 ]; then
    run "ui tests" ui_tests
else
    SUMMARY+=("FAILED  0s  ui tests (not run: no chromium, node or playwright-core)")
    FAILED+=("ui tests")
fi
finish
