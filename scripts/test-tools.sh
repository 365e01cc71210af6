#!/usr/bin/env bash
# What the tests need from the machine besides Rust, installed where missing; scripts/test.sh runs
# it in two parts (`--part builds` beside the tests' build, `--part tests` after it, beside the
# images and the wheel). `--check` installs nothing: it exits 1 with the one line that fixes
# it when something is missing and cannot be installed here (not root, no apt-get, no pip), so the
# test command stops before compiling.
#
# Installs: Debian's busybox-static (the stand-in agent image's shell), bash-static (the SkyPilot
# rehearsal's job image), docker-registry (pull tests), util-linux (flock); PyPI's moto[server] (AWS
# tests); SkyPilot's loader in two virtual environments (the example task YAMLs are checked by it);
# maturin, twine, uv and wheel in one venv (the wheel and sdist are built and installed);
# crates.io's cargo-auditable (the release build embeds its dependency list); a newer
# Docker Engine (Debian trixie's docker.io and containerd, API 1.45) unpacked, not installed, that
# one test starts as a second daemon; jsonschema (scripts/openapi-requirements.txt) in a venv of its
# own, which checks every request the tests make to the fake Datadog API against Datadog's OpenAPI
# spec. These live in the user's cache,
# ${XDG_CACHE_HOME:-~/.cache}/ddsky/{skypilot-venvs,release-venv,cargo-tools,newer-engine,openapi-venv}
# (or where DDSKY_SKYPILOT_VENVS, DDSKY_RELEASE_VENV, DDSKY_CARGO_TOOLS, DDSKY_NEWER_ENGINE,
# DDSKY_OPENAPI_VENV say), made once per machine and
# reused by every checkout, as cargo keeps its registry in ~/.cargo.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "scripts/test.sh: $*" >&2; }
stop() { say "$*"; exit 1; }

# The SkyPilot releases the examples are checked against: the README's floor and the newest.
skypilot_versions=(0.10.5 0.14.1)
tools_root=${XDG_CACHE_HOME:-$HOME/.cache}/ddsky
venv_root=${DDSKY_SKYPILOT_VENVS:-$tools_root/skypilot-venvs}
engine_root=${DDSKY_NEWER_ENGINE:-$tools_root/newer-engine}
openapi_venv=${DDSKY_OPENAPI_VENV:-$tools_root/openapi-venv}
openapi_requirements=scripts/openapi-requirements.txt

command -v python3 >/dev/null || stop "no python3 on PATH: apt-get install -y python3 python3-venv python3-pip"

need_apt=()
static_ok() { [ -x "$1" ] && ! ldd "$1" 2>&1 | grep -q '=>'; }  # loads no shared library
static_ok /bin/busybox || need_apt+=(busybox-static)
static_ok /bin/bash-static || need_apt+=(bash-static)
command -v docker-registry >/dev/null || need_apt+=(docker-registry)
command -v docker >/dev/null || need_apt+=(docker.io)
command -v flock >/dev/null || need_apt+=(util-linux)
if [ ${#need_apt[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || stop "missing ${need_apt[*]}; as root: apt-get install -y ${need_apt[*]}"
  command -v apt-get >/dev/null || stop "missing ${need_apt[*]} and no apt-get: install them with your package manager"
fi

scripts_dir=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
export PATH="$scripts_dir:$PATH"
need_moto=false
command -v moto_server >/dev/null || need_moto=true

need_venvs=()
for version in "${skypilot_versions[@]}"; do
  "$venv_root/$version/bin/python" -c 'import importlib.util as u; exit(u.find_spec("sky") is None)' 2>/dev/null ||
    need_venvs+=("$version")
done
need_openapi=false
cmp -s "$openapi_requirements" "$openapi_venv/requirements.txt" 2>/dev/null &&
  "$openapi_venv/bin/python" -c 'import jsonschema' 2>/dev/null || need_openapi=true
if [ ${#need_venvs[@]} -gt 0 ] || $need_openapi || [ ! -x "${DDSKY_RELEASE_VENV:-$tools_root/release-venv}/bin/maturin" ]; then
  python3 -c 'import ensurepip' 2>/dev/null || stop "cannot make a virtual environment: apt-get install -y python3-venv"
fi

need_engine=false
if [ ! -x "$engine_root/root/usr/sbin/dockerd" ] || [ ! -x "$engine_root/root/usr/bin/containerd" ]; then
  command -v apt-get >/dev/null && command -v dpkg >/dev/null ||
    stop "no apt-get/dpkg to fetch Debian trixie's docker.io and containerd: unpack both (dpkg -x) into $engine_root/root, or set DDSKY_NEWER_ENGINE to a folder holding them"
  need_engine=true
fi

[ "${1:-}" = --check ] && exit 0
# `--part builds`: only what the test images and the packaging tests' wheel need (the Debian
# packages, the release venv, cargo-auditable); `--part tests`: the rest. scripts/test.sh runs the
# first beside the tests' build and the second beside the images and the wheel. No argument: all.
part=all
[ "${1:-}" = --part ] && part=${2:?--part builds or --part tests}

if [ "$part" != tests ] && [ ${#need_apt[@]} -gt 0 ]; then
  say "installing Debian packages: ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null ||
    stop "could not install ${need_apt[*]}: apt-get install -y ${need_apt[*]}"
fi

# The release tools (maturin, twine, uv, wheel), made once and reused: the packaging tests
# (tests/e2e/wheel.rs) build the wheel and sdist with scripts/release.sh, which uses this venv.
release_venv=$(bash scripts/release-venv.sh) || stop "could not make the release tools' venv (see above)"
# cargo-auditable, which the release build runs under (scripts/release.sh; crates.io, once per machine).
if [ "$part" != tests ]; then
  bash scripts/cargo-tool.sh cargo-auditable 0.7.7 >/dev/null || stop "could not install cargo-auditable (see above)"
fi
[ "$part" = builds ] && exit 0

if $need_moto; then
  say "installing moto[server] from PyPI (the AWS Secrets Manager tests' server)"
  "$release_venv/bin/uv" pip install --quiet --python "$(command -v python3)" 'moto[server]' ||
    stop "could not install moto[server] into $(command -v python3) (uv pip install, above)"
  command -v moto_server >/dev/null || stop "moto installed but moto_server is not on PATH (looked in $scripts_dir)"
fi

# SkyPilot's own loader, one venv per pinned release. uv (the release venv's, as for moto above)
# took a third of pip's wall time here and 60% of its CPU time. 0.10.x imports greenlet without
# declaring it.
for version in "${need_venvs[@]}"; do
  venv="$venv_root/$version"
  say "installing skypilot==$version from PyPI into $venv (once; reused by later runs)"
  rm -rf "$venv"
  "$release_venv/bin/uv" venv --quiet --python python3 "$venv" ||
    stop "cannot make a virtual environment at $venv (uv venv, above)"
  "$release_venv/bin/uv" pip install --quiet --python "$venv/bin/python" --compile-bytecode \
    "skypilot==$version" greenlet || stop "could not install skypilot==$version into $venv"
  "$venv/bin/python" -c 'import sky' || stop "skypilot==$version installed into $venv but does not import (above)"
done

# The OpenAPI check's validator, made again only when its requirements change.
if $need_openapi; then
  say "installing jsonschema from PyPI into $openapi_venv (once; reused by later runs)"
  rm -rf "$openapi_venv"
  "$release_venv/bin/uv" venv --quiet --python python3 "$openapi_venv" ||
    stop "cannot make a virtual environment at $openapi_venv (uv venv, above)"
  "$release_venv/bin/uv" pip install --quiet --python "$openapi_venv/bin/python" -r "$openapi_requirements" ||
    stop "could not install $openapi_requirements into $openapi_venv"
  cp "$openapi_requirements" "$openapi_venv/requirements.txt"
fi

# A newer engine than the machine's 20.10, unpacked from Debian trixie's packages (apt-get download
# with a sources list of its own: nothing of the host's apt state changes). Runs with the host's runc.
if $need_engine; then
  say "fetching Debian trixie's docker.io and containerd into $engine_root (unpacked, not installed; once)"
  rm -rf "$engine_root"
  mkdir -p "$engine_root/lists/partial" "$engine_root/cache/archives/partial" "$engine_root/debs" "$engine_root/root"
  printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    >"$engine_root/trixie.sources"
  apt_opts=(-o "Dir::Etc::SourceList=$engine_root/trixie.sources" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$engine_root/lists" -o "Dir::Cache=$engine_root/cache" -o APT::Sandbox::User=root)
  apt-get "${apt_opts[@]}" update -qq ||
    stop "could not read Debian trixie's package lists (deb.debian.org); see the lines above"
  (cd "$engine_root/debs" && apt-get "${apt_opts[@]}" download -qq docker.io containerd) ||
    stop "could not download trixie's docker.io and containerd; see the lines above"
  for deb in "$engine_root"/debs/*.deb; do dpkg -x "$deb" "$engine_root/root"; done
fi
