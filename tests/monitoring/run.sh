#!/usr/bin/env bash
# promtool over the alerts of manifests/components/monitoring: the rules load, and every alert
# fires and stays quiet where tests/monitoring/rules.test.yaml says.
#   tests/monitoring/run.sh [PYTHON]   (a python3 with PyYAML; default .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/../.."
py=${1:-.venv/bin/python}
if ! command -v promtool >/dev/null; then
  if [[ $(id -u) == 0 ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
  else
    echo "promtool is not installed (apt-get install prometheus, as root)" >&2
    exit 1
  fi
fi
rule=manifests/components/monitoring/prometheusrule.yaml
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
"$py" tests/monitoring/rules.py extract "$rule" "$t/scimgate.rules.yaml"
cp tests/monitoring/rules.test.yaml "$t/"
promtool check rules "$t/scimgate.rules.yaml"
promtool test rules "$t/rules.test.yaml"
"$py" tests/monitoring/rules.py covered "$rule" tests/monitoring/rules.test.yaml
