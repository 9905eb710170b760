#!/usr/bin/env bash
# Build the example models: examples/sklearn-churn/{model.pkl,metadata.json} and
# examples/onnx-churn/{model.onnx,metadata.json,expected.json}. Works from any directory.
# A step is skipped when its outputs are newer than its inputs; --force rebuilds everything
# (including the committed data/churn.csv, which is otherwise only generated when missing).
# PYTHON overrides the interpreter (default /usr/bin/python3).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
py=${PYTHON:-/usr/bin/python3}
force=0
[[ ${1:-} == --force ]] && force=1

# stale "out1 out2 ..." "in1 in2 ...": true when an output is missing or older than an input
stale() {
  local o i
  (( force )) && return 0
  for o in $1; do
    [[ -e $here/$o ]] || return 0
    for i in $2; do [[ $here/$i -nt $here/$o ]] && return 0; done
  done
  return 1
}

# churn.csv is committed: regenerate it only when missing (or --force), never because of checkout mtimes.
if (( force )) || [[ ! -e $here/data/churn.csv ]]; then
  "$py" "$here/data/make_churn.py"
fi
if stale "sklearn-churn/model.pkl sklearn-churn/metadata.json" "sklearn-churn/train.py data/churn.csv"; then
  "$py" "$here/sklearn-churn/train.py"
else
  echo "sklearn-churn: up to date"
fi
if stale "onnx-churn/model.onnx onnx-churn/metadata.json onnx-churn/expected.json" "onnx-churn/build.py data/churn.csv"; then
  "$py" "$here/onnx-churn/build.py"
else
  echo "onnx-churn: up to date"
fi
