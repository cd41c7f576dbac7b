#!/usr/bin/env bash
# wait-established.sh CRD [SECONDS]: waits until the CustomResourceDefinition CRD is Established (default 60 s).
# Not `kubectl wait --for condition=established`: kubectl 1.20's wait fails at once, with ".status.conditions accessor
# error: <nil> is of the type <nil>", when it reads the CRD before the apiserver has written any condition.
set -euo pipefail
crd=${1:?usage: wait-established.sh CRD [SECONDS]}
deadline=$((SECONDS + ${2:-60}))
while :; do
  status=$(kubectl get crd "$crd" -o 'jsonpath={.status.conditions[?(@.type=="Established")].status}' 2>/dev/null || true)
  [ "$status" = True ] && exit 0
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "wait-established.sh: $crd not Established after ${2:-60} s (Established=${status:-unset})" >&2
    exit 1
  fi
  sleep 0.2
done
