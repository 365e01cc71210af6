#!/usr/bin/env bash
# Stamps a released wheel's sha256 next to the setup snippet's pin: `bash scripts/stamp-release.sh
# WHEEL [FILE...]` writes `ddsky_sha256=<sha256 of WHEEL>` into every FILE (default: every file of
# the repository that holds the snippet with its `ddsky_sha256=` line: the snippet and each example
# that embeds it, found, not listed), keeping each line's indentation and comment. Without FILEs it also records the
# hash under CHANGELOG.md's entry for the wheel's version (`Wheel sha256: ...`), which the versions
# test (tests/e2e/wheel.rs) compares with the snippet's. scripts/release.sh runs it on a release; the
# tests run it on copies (DDSKY_STAMP_ROOT: a folder to stamp instead of the repository).
set -euo pipefail
repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
repo=${DDSKY_STAMP_ROOT:-$repo}
say() { echo "scripts/stamp-release.sh: $*" >&2; }
stop() { say "$*"; exit 1; }

wheel=${1:?usage: bash scripts/stamp-release.sh WHEEL [FILE...]}
shift
[ -f "$wheel" ] || stop "no wheel at $wheel"
sha=$(sha256sum "$wheel") || stop "cannot read $wheel"
sha=${sha%% *}
name=${wheel##*/}
version=${name#ddsky-}
version=${version%%-*}

files=("$@")
record_in_changelog=false
if [ ${#files[@]} -eq 0 ]; then
  record_in_changelog=true
  # Every file that holds the snippet (its opening marker) with its hash line, wherever it was pasted.
  mapfile -t files < <(cd "$repo" && grep -rlF '# >>> ddsky setup snippet' --exclude-dir=target \
    --exclude-dir=.git --exclude-dir=fuzz --exclude-dir=tests . |
    xargs -r grep -lE '^[[:space:]]*ddsky_sha256=' | sed 's|^\./||' | sort)
  [ ${#files[@]} -gt 0 ] || stop "no file in $repo carries a ddsky_sha256= line"
  files=("${files[@]/#/$repo/}")
fi

for file in "${files[@]}"; do
  pin=$(sed -nE 's/^[[:space:]]*ddsky_pin=([^[:space:]]*).*/\1/p' "$file" | head -1)
  [ "$pin" = "$version" ] || stop "$file pins ddsky_pin=${pin:-nothing}, not the wheel's $version: bump the pin first"
  # The value only: indentation, `ddsky_sha256=` and the comment after it stay.
  sed -i -E "s/^([[:space:]]*ddsky_sha256=)[0-9a-f]*( |$)/\1$sha\2/" "$file"
  grep -qE "^[[:space:]]*ddsky_sha256=$sha( |$)" "$file" || stop "could not stamp $file"
done

if $record_in_changelog; then
  changelog=$repo/CHANGELOG.md
  latest=$(sed -nE 's/^## \[([0-9][^]]*)\] - .*/\1/p' "$changelog" | head -1)
  [ "$latest" = "$version" ] ||
    stop "CHANGELOG.md's latest release is ${latest:-none}, not $version: move Unreleased to a [$version] entry first"
  python3 - "$changelog" "$version" "$sha" "$name" <<'EOF'
import re, sys
path, version, sha, name = sys.argv[1:]
text = open(path).read()
heading = re.search(r"^## \[" + re.escape(version) + r"\] - .*\n", text, re.M)
line = f"Wheel sha256: `{sha}` (`{name}`)\n"
rest = text[heading.end():]
# Replaces an earlier stamp of this entry, else goes right under the heading.
old = re.match(r"\nWheel sha256: `[0-9a-f]*` \(`[^`]*`\)\n", rest)
rest = rest[old.end():] if old else rest
open(path, "w").write(text[:heading.end()] + "\n" + line + rest)
EOF
fi
printf '%s\n' "${files[@]}" | sed "s|^$repo/||; s|^|stamped $sha into |" >&2
