#!/usr/bin/env bash
# The API reference, generated from onnxcam's docstrings with pdoc into docs/api/ (HTML, one page per
# module, with search). Needs the docs extra:  pip install -e ".[cpu,docs]" -c constraints.txt
# The generated pages are not committed (rebuild them from the source you have); open docs/api/index.html.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-docs/api}"
rm -rf "$OUT"
# the public modules; onnxcam.graph and onnxcam.intake are internals documented by their docstrings
python -m pdoc --docformat markdown --no-show-source -o "$OUT" \
  onnxcam onnxcam.inputs onnxcam.metrics onnxcam.methods onnxcam.preprocess onnxcam.errors \
  onnxcam.report onnxcam.svgplot onnxcam.graph.rules.lrp
echo "wrote $OUT/index.html"
