#!/usr/bin/env bash
# Makes the release tools' venv (scripts/release-requirements.txt: maturin, twine, uv from PyPI) at
# DDSKY_RELEASE_VENV (default ${XDG_CACHE_HOME:-~/.cache}/ddsky/release-venv, shared by every
# checkout) once, and again only when the requirements
# change; prints its path. Used by scripts/release.sh and scripts/test.sh.
set -euo pipefail
repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
venv=${DDSKY_RELEASE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/ddsky/release-venv}
requirements=$repo/scripts/release-requirements.txt
say() { echo "scripts/release-venv.sh: $*" >&2; }

if ! cmp -s "$requirements" "$venv/requirements.txt" 2>/dev/null || [ ! -x "$venv/bin/maturin" ]; then
  command -v python3 >/dev/null || { say "no python3 on PATH: apt-get install -y python3 python3-venv"; exit 1; }
  say "installing maturin, twine and uv from PyPI into $venv (once; reused by later runs)"
  rm -rf "$venv"
  python3 -m venv "$venv" || { say "cannot make a virtual environment: apt-get install -y python3-venv"; exit 1; }
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" ||
    { say "could not install $requirements into $venv"; exit 1; }
  cp "$requirements" "$venv/requirements.txt"
fi
echo "$venv"
