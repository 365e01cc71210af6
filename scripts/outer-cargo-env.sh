# Sourced by scripts that run cargo and may themselves run under `cargo test` (scripts/release.sh,
# docker/build-test-images.sh): drops what the outer cargo set for its test process, so that the
# inner build is fingerprinted as the same build run from a shell. Without this, build scripts that
# watch such a variable (ring's watches CARGO_PKG_NAME) would see it change and rebuild ring and all
# that depends on it: ~110 CPU-seconds of the wheel tests.
for var in $(compgen -e); do
  case "$var" in
    CARGO_PKG_* | CARGO_BIN_EXE_* | CARGO_BIN_NAME | CARGO_CRATE_NAME | CARGO_MANIFEST_* | \
      CARGO_PRIMARY_PACKAGE | CARGO_TARGET_TMPDIR | CARGO_RUSTC_CURRENT_DIR | OUT_DIR | \
      CARGO_ENCODED_RUSTFLAGS | CARGO_BUILD_RUSTFLAGS | CARGO_BUILD_TARGET | CARGO_MAKEFLAGS | \
      MAKEFLAGS | MFLAGS | CARGO_TARGET_*_RUSTFLAGS)
      unset "$var" ;;
  esac
done
