#!/usr/bin/env bash
# Install the peer engines that scripts/bench_models.py compares tvmprune with, each in its own
# virtual environment (their pins clash with each other and with torch):
#   ~/.cache/tvmprune/peers/<engine>/bin/python  for onnxruntime, openvino, deepsparse.
# The benchmark finds them there (or takes --peer-python ENGINE=PATH). Benchmark-only: tvmprune itself
# never imports them. Usage: bash scripts/install_peers.sh [onnxruntime] [openvino] [deepsparse]
set -euo pipefail
root="${TVMPRUNE_PEERS_DIR:-$HOME/.cache/tvmprune/peers}"
engines=("$@")
[ ${#engines[@]} -eq 0 ] && engines=(onnxruntime openvino deepsparse)
py="${PYTHON:-python3}"
for e in "${engines[@]}"; do
  case "$e" in
    onnxruntime) pkgs=(onnxruntime) ;;
    openvino) pkgs=(openvino) ;;
    # 1.8.0 is the last release with wheels (cp311 only); it pins numpy 1.26 and onnx 1.14
    deepsparse) pkgs=(deepsparse==1.8.0) ;;
    *) echo "unknown engine '$e' (onnxruntime, openvino, deepsparse)" >&2; exit 2 ;;
  esac
  if [ -x "$root/$e/bin/python" ] && "$root/$e/bin/python" -c "import $e" 2>/dev/null; then
    echo "$e: already installed in $root/$e"; continue
  fi
  echo "$e: installing ${pkgs[*]} into $root/$e"
  "$py" -m venv "$root/$e"
  if ! "$root/$e/bin/pip" install -q numpy "${pkgs[@]}"; then
    echo "$e: could not be installed here (see pip's message above); the benchmark will say it is missing" >&2
    rm -rf "$root/$e"
  fi
done
