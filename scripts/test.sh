#!/usr/bin/env bash
# The README's test command: installs what a fresh machine of this project's kind lacks, says what it
# installs, then runs every test (`cargo test --workspace`). Where it cannot install (not root, no
# apt-get, no pip) it stops before compiling anything, with the one line that fixes it.
#
# Installs: Debian's busybox-static (the stand-in agent image's shell), bash-static (the SkyPilot
# rehearsal's job image), docker-registry (pull tests), util-linux (flock); PyPI's moto[server] (AWS
# tests); SkyPilot's loader in two virtual environments (the example task YAMLs are checked by it);
# maturin, twine, uv and wheel in one venv (the wheel and sdist are built and installed); a newer
# Docker Engine (Debian trixie's docker.io and containerd, API 1.45) unpacked, not installed, that
# one test starts as a second daemon. These three live in the user's cache,
# ${XDG_CACHE_HOME:-~/.cache}/ddsky/{skypilot-venvs,release-venv,newer-engine} (or where
# DDSKY_SKYPILOT_VENVS, DDSKY_RELEASE_VENV, DDSKY_NEWER_ENGINE say), made once per machine and
# reused by every checkout, as cargo keeps its registry in ~/.cargo.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "scripts/test.sh: $*" >&2; }
stop() { say "$*"; exit 1; }

# The SkyPilot releases the examples are checked against: the README's floor and the newest.
skypilot_versions=(0.10.5 0.14.1)
tools_root=${XDG_CACHE_HOME:-$HOME/.cache}/ddsky
venv_root=${DDSKY_SKYPILOT_VENVS:-$tools_root/skypilot-venvs}

command -v cargo >/dev/null || stop "no cargo on PATH: install Rust (https://rustup.rs), then run again"
command -v python3 >/dev/null || stop "no python3 on PATH: apt-get install -y python3 python3-venv python3-pip"

need_apt=()
busybox_ok() { [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; }
busybox_ok || need_apt+=(busybox-static)
bash_static_ok() { [ -x /bin/bash-static ] && ! ldd /bin/bash-static >/dev/null 2>&1; }
bash_static_ok || need_apt+=(bash-static)
command -v docker-registry >/dev/null || need_apt+=(docker-registry)
command -v docker >/dev/null || need_apt+=(docker.io)
command -v flock >/dev/null || need_apt+=(util-linux)
if [ ${#need_apt[@]} -gt 0 ]; then
  fix="apt-get install -y ${need_apt[*]}"
  [ "$(id -u)" = 0 ] || stop "missing ${need_apt[*]}; as root: $fix"
  command -v apt-get >/dev/null || stop "missing ${need_apt[*]} and no apt-get: install them with your package manager"
  say "installing Debian packages: ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

scripts_dir=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
export PATH="$scripts_dir:$PATH"
if ! command -v moto_server >/dev/null; then
  python3 -m pip --version >/dev/null 2>&1 || stop "no pip for python3: apt-get install -y python3-pip"
  say "installing moto[server] from PyPI (the AWS Secrets Manager tests' server)"
  python3 -m pip install --quiet 'moto[server]' ||
    stop "could not install moto: python3 -m pip install 'moto[server]'"
  command -v moto_server >/dev/null || stop "moto installed but moto_server is not on PATH (looked in $scripts_dir)"
fi

# SkyPilot's own loader, one venv per pinned release. 0.10.x imports greenlet without declaring it.
for version in "${skypilot_versions[@]}"; do
  venv="$venv_root/$version"
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sky' 2>/dev/null; then
    say "installing skypilot==$version from PyPI into $venv (once; reused by later runs)"
    rm -rf "$venv"
    python3 -m venv "$venv" || stop "cannot make a virtual environment: apt-get install -y python3-venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "skypilot==$version" greenlet ||
      stop "could not install skypilot==$version into $venv"
  fi
done
export DDSKY_SKYPILOT_VENVS="$venv_root"

# The release tools (maturin, twine, uv, wheel from PyPI) in one venv, made once and reused: the
# packaging tests (tests/e2e/wheel.rs) build the wheel and sdist with scripts/release.sh.
DDSKY_RELEASE_VENV=$(bash scripts/release-venv.sh) || stop "could not make the release tools' venv (see above)"
export DDSKY_RELEASE_VENV

# A newer engine than the machine's 20.10, unpacked from Debian trixie's packages (apt-get download
# with a sources list of its own: nothing of the host's apt state changes). Runs with the host's runc.
engine_root=${DDSKY_NEWER_ENGINE:-$tools_root/newer-engine}
if [ ! -x "$engine_root/root/usr/sbin/dockerd" ] || [ ! -x "$engine_root/root/usr/bin/containerd" ]; then
  command -v apt-get >/dev/null && command -v dpkg >/dev/null ||
    stop "no apt-get/dpkg to fetch Debian trixie's docker.io and containerd: unpack both (dpkg -x) into $engine_root/root, or set DDSKY_NEWER_ENGINE to a folder holding them"
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
export DDSKY_NEWER_ENGINE="$engine_root"

# The daemon is started before the session on this kind of machine; start one where none answers.
if ! docker info >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || stop "the Docker daemon does not answer: start it (systemctl start docker), or add yourself to the docker group"
  say "starting dockerd (log: /tmp/dockerd.log)"
  (dockerd >/tmp/dockerd.log 2>&1 &)
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || stop "dockerd did not start: see /tmp/dockerd.log"
fi

# The test images' static release build (docker/build-test-images.sh: ddsky's is also the wheel's)
# and the tests' debug build lock different profile directories: start the images now, so that
# their compile runs beside the tests' and fills the core the other leaves idle (serial crates,
# build scripts, links). The first end-to-end test runs the script again (flock: it waits for this
# one) and shows its errors, if any; a failure here only costs the head start.
setsid bash docker/build-test-images.sh >/dev/null 2>&1 &
images=$!
# Most end-to-end tests wait on an agent's start-up, not on the CPU: they run side by side, and the
# few that share something of the host take turns (tests/e2e/common.rs, HostResource).
export RUST_TEST_THREADS=${RUST_TEST_THREADS:-6}
status=0
cargo test --workspace "$@" || status=$?
kill -- -"$images" 2>/dev/null || true
exit "$status"
