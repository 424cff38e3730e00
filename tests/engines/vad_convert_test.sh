#!/usr/bin/env bash
# tests/engines/vad_convert_test.sh ROOT — converts third_party/vad-web/silero_vad_v6.onnx with
# scripts/convert-silero-vad.py and checks the result is byte for byte the pinned reference conversion
# (silero-v6.2.0-ggml.bin, 885,098 bytes). Exit 0 = pass. Needs scripts/fetch-deps to have run and
# Debian's python3-onnx for /usr/bin/python3.
set -euo pipefail

ROOT="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
EXPECTED="2aa269b785eeb53a82983a20501ddf7c1d9c48e33ab63a41391ac6c9f7fb6987"
ONNX="$ROOT/third_party/vad-web/silero_vad_v6.onnx"

if [ ! -f "$ONNX" ]; then
  echo "vad_convert_test: FAIL: $ONNX missing: run scripts/fetch-deps"
  exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

if ! /usr/bin/python3 "$ROOT/scripts/convert-silero-vad.py" "$ONNX" "$tmp/silero.bin" > "$tmp/log" 2>&1; then
  cat "$tmp/log"
  echo "vad_convert_test: FAIL: converter exited non-zero"
  exit 1
fi

got="$(sha256sum "$tmp/silero.bin" | cut -d' ' -f1)"
echo "expected sha256: $EXPECTED"
echo "got      sha256: $got  ($(stat -c %s "$tmp/silero.bin") bytes)"
if [ "$got" = "$EXPECTED" ]; then
  echo "vad_convert_test: PASS: byte-identical to the reference"
  exit 0
fi
echo "vad_convert_test: FAIL: converter output differs from the reference"
exit 1
