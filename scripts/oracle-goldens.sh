#!/usr/bin/env bash
# Refreshes the golden outputs of the committed sample models by running them through the
# official TensorFlow Lite runtime (shared/oracle, TFLite compiled to WebAssembly).
#
#   scripts/oracle-goldens.sh            # writes models/sample/testdata/oracle-*.json*
#
# Needs Node >= 18 and the npm registry (npm ci of the oracle, ~81 MB, into a temp dir: the
# shared copy is read-only). Developers run it after changing a sample model; CI does not.
# Set ORACLE_SRC to use an oracle directory other than ../shared/oracle.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
oracle_src=${ORACLE_SRC:-$root/../shared/oracle}
[ -f "$oracle_src/tflite-oracle.js" ] || { echo "oracle-goldens: no tflite-oracle.js in $oracle_src" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r "$oracle_src" "$tmp/oracle"
chmod -R u+w "$tmp/oracle"
(cd "$tmp/oracle" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
oracle="$tmp/oracle/tflite-oracle.js"

cd "$root"
sample=models/sample
model=$sample/vibration-anomaly-f32.tflite

# The goldens must describe the committed model: regenerate it and refuse to go on if the
# committed file is stale. The same run writes the demo windows fed to the oracle.
go run ./models/train/cmd/outpost-train -q -out "$tmp/gen" -oracle-batch "$tmp/windows.jsonl" >/dev/null
if ! cmp -s "$tmp/gen/vibration-anomaly-f32.tflite" "$model"; then
	echo "oracle-goldens: $model is stale; run 'go run ./models/train/cmd/outpost-train -out $sample' first" >&2
	exit 1
fi

mkdir -p "$sample/testdata"
# "+logit" also exposes the pre-sigmoid tensor, so tests can compare it where the score
# saturates at 0 or 1.
node "$oracle" "$model" --random 1 --outputs +logit >"$sample/testdata/oracle-random1.json"
node "$oracle" "$model" --batch "$tmp/windows.jsonl" --outputs +logit >"$sample/testdata/oracle-windows.jsonl"
echo "oracle-goldens: wrote $sample/testdata/oracle-random1.json and oracle-windows.jsonl"
