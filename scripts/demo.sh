#!/usr/bin/env bash
# Ambit's main job on its embedded default: start the control plane with its embedded store,
# apply the sample manifests, list them back. The control plane keeps running afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_DIR=${AMBIT_DATA_DIR:-/var/lib/ambit}
LOG=${AMBIT_LOG:-/var/log/ambit-controlplane.log}
export AMBIT_CONFIG="$DATA_DIR/admin.yaml"
ambit() { node bin/ambit "$@"; }

if [ -f "$DATA_DIR/controlplane.pid" ] && kill -0 "$(cat "$DATA_DIR/controlplane.pid")" 2>/dev/null; then
  echo "demo: control plane already running (pid $(cat "$DATA_DIR/controlplane.pid"))"
else
  mkdir -p "$DATA_DIR" "$(dirname "$LOG")"
  nohup node bin/ambit controlplane --data-dir "$DATA_DIR" >>"$LOG" 2>&1 &
  echo $! > "$DATA_DIR/controlplane.pid"
  echo "demo: started the control plane (pid $!, log $LOG)"
  for _ in $(seq 1 100); do
    if node -e "require('http').get('http://127.0.0.1:15014/healthz/ready',r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1))"; then break; fi
    sleep 0.2
  done
fi

ambit apply -f deploy/examples/
echo
ambit get namespaces -o wide
echo
for kind in services gateways httproutes authorizationpolicies peerauthentications requestauthentications destinationrules virtualservices workloadentries; do
  echo "== $kind"
  ambit get "$kind" -A
done
cat <<MSG

The control plane keeps running (pid $(cat "$DATA_DIR/controlplane.pid")). Try:
  export AMBIT_CONFIG=$AMBIT_CONFIG
  node bin/ambit get svc -n demo -o yaml
  curl -s 127.0.0.1:15014/metrics | grep ambit_
Stop it with: kill \$(cat $DATA_DIR/controlplane.pid)
MSG
