#!/usr/bin/env bash
# Ambit's main job on its embedded default: a two-host local cluster (network namespaces,
# real control plane, cni agents, ztunnels), a client and a server in an ambient
# namespace, and a request going through the mesh. Run `node bin/ambit dev down` to remove it.
set -euo pipefail
cd "$(dirname "$0")/.."
ambit() { node bin/ambit "$@"; }
export AMBIT_DEV_DIR=${AMBIT_DEV_DIR:-/var/run/ambit-dev}
export AMBIT_CONFIG="$AMBIT_DEV_DIR/admin.yaml"

ambit dev up --nodes 2
ambit apply -f deploy/examples/
ambit apply -f deploy/demo/
echo
ambit get services -A -o wide
echo

# Fresh pods on every run: web on node2, client on node1.
ambit dev pod delete web client -n hello >/dev/null 2>&1 || true
SERVER="require('http').createServer((q, s) => s.end('hello from ' + process.env.POD_NAME + ' on ' + process.env.NODE_NAME + '\n')).listen(8080)"
ambit dev pod run web -n hello --node node2 --sa web -l app=web -- node -e "$SERVER"
ambit dev pod run client -n hello --node node1 --sa client -- sleep infinity
for _ in $(seq 1 60); do
  [ "$(ambit dev pod list -o json | node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>console.log(JSON.parse(s).filter(p=>p.namespace==='hello'&&p.enrolled).length))")" = 2 ] && break
  sleep 0.5
done
ambit dev pod list

echo
echo "== client (node1) -> http://web (node2), through both ztunnels in an HBONE mTLS tunnel:"
GET="fetch(process.argv[1]).then(async r => process.stdout.write(r.status + ' ' + await r.text()), e => { console.error(String(e.cause || e)); process.exit(1); })"
for _ in $(seq 1 20); do
  if ambit dev exec client -n hello -- node -e "$GET" http://web/; then break; fi
  sleep 1
done
echo
echo "== what node1's ztunnel knows:"
ambit ztunnel-config workloads --node node1
echo
echo "== node2's ztunnel saw the client's SPIFFE identity:"
ip netns exec ambit-node2 node -e "fetch('http://127.0.0.1:15020/metrics').then(r=>r.text()).then(t=>console.log(t.split('\n').filter(l=>l.startsWith('istio_tcp_connections_opened_total')&&l.includes('reporter=\"destination\"')).join('\n')))"
cat <<MSG

Try next:
  export AMBIT_CONFIG=$AMBIT_CONFIG
  node bin/ambit get workloads -A -o wide
  node bin/ambit dev pod run intruder -n hello --sa intruder -- sleep infinity
  node bin/ambit dev exec intruder -n hello -- node -e "fetch('http://web').then(r=>console.log(r.status),e=>console.log('refused:',String(e.cause||e)))"
  node bin/ambit dev down     # remove everything
MSG
