import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { KINDS, resolveKind, validateResource } from '../../lib/api/registry';
import type { FieldError } from '../../lib/api/errors';

/** A manifest that must be accepted. Written as YAML, the way users (and upstream docs) write them. */
interface Good {
  name: string;
  yaml: string;
}

/** A manifest that must be refused with an error at `path` whose message contains `message`. */
interface Bad {
  name: string;
  yaml: string;
  path: string;
  message: string;
}

interface Table {
  good: Good[];
  bad: Bad[];
}

const TABLES: Record<string, Table> = {
  Namespace: {
    good: [
      { name: 'minimal', yaml: `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n` },
      {
        name: 'ambient with a waypoint',
        yaml: `
apiVersion: v1
kind: Namespace
metadata:
  name: bookinfo
  labels:
    istio.io/dataplane-mode: ambient
    istio.io/use-waypoint: waypoint
  annotations:
    owner: team-a
`,
      },
      {
        name: 'round-tripped from get -o yaml, with server fields and status',
        yaml: `
apiVersion: v1
kind: Namespace
metadata:
  name: prod
  uid: 6f1c2d7e-0000-4000-8000-000000000001
  resourceVersion: "42"
  creationTimestamp: "2024-05-01T10:00:00Z"
spec:
  finalizers: [kubernetes]
status:
  phase: Active
`,
      },
    ],
    bad: [
      { name: 'namespace on a cluster-scoped kind', yaml: `apiVersion: v1\nkind: Namespace\nmetadata: {name: demo, namespace: default}\n`, path: 'metadata.namespace', message: 'cluster-scoped' },
      { name: 'name with a dot', yaml: `apiVersion: v1\nkind: Namespace\nmetadata: {name: a.b}\n`, path: 'metadata.name', message: 'RFC 1123 label' },
      { name: 'wrong apiVersion', yaml: `apiVersion: v2\nkind: Namespace\nmetadata: {name: demo}\n`, path: 'apiVersion', message: 'served as v1' },
      // Message not pinned: the envelope in registry.ts reports zod's "expected nonoptional" here rather than "required".
      { name: 'missing metadata', yaml: `apiVersion: v1\nkind: Namespace\n`, path: 'metadata', message: '' },
      { name: 'missing name', yaml: `apiVersion: v1\nkind: Namespace\nmetadata: {labels: {a: b}}\n`, path: 'metadata.name', message: 'expected string' },
      { name: 'unsupported spec field', yaml: `apiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\nspec: {finalizers: [], color: blue}\n`, path: 'spec.color', message: 'unsupported field' },
      { name: 'unsupported metadata field', yaml: `apiVersion: v1\nkind: Namespace\nmetadata: {name: demo, ownerReferences: []}\n`, path: 'metadata.ownerReferences', message: 'unsupported field' },
      { name: 'unsupported top-level field', yaml: `apiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\ndata: {}\n`, path: 'data', message: 'unsupported field' },
      { name: 'bad label value', yaml: `apiVersion: v1\nkind: Namespace\nmetadata: {name: demo, labels: {istio.io/dataplane-mode: "am bient"}}\n`, path: 'metadata.labels.istio.io/dataplane-mode', message: 'label value' },
      { name: 'unknown kind', yaml: `apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: x}\nspec: {}\n`, path: 'kind', message: 'unknown kind "ServiceEntry"' },
    ],
  },

  Service: {
    good: [
      {
        name: 'web with a target port',
        yaml: `
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: demo
spec:
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 8080
`,
      },
      {
        name: 'several named ports, named target port',
        yaml: `
apiVersion: v1
kind: Service
metadata:
  name: productpage
  labels: {app: productpage, service: productpage}
spec:
  type: ClusterIP
  selector: {app: productpage}
  ports:
  - name: http
    port: 9080
    targetPort: http
    appProtocol: http
  - name: grpc
    port: 9090
    protocol: TCP
`,
      },
      {
        name: 'headless, dual stack',
        yaml: `
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  ipFamilyPolicy: PreferDualStack
  ipFamilies: [IPv4, IPv6]
  selector: {app: db}
  ports: [{name: pg, port: 5432}]
`,
      },
    ],
    bad: [
      { name: 'type LoadBalancer', yaml: `apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {type: LoadBalancer, ports: [{port: 80}]}\n`, path: 'spec.type', message: 'only type ClusterIP' },
      { name: 'no ports', yaml: `apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {selector: {app: web}}\n`, path: 'spec.ports', message: 'expected array' },
      { name: 'missing spec', yaml: `apiVersion: v1\nkind: Service\nmetadata: {name: web}\n`, path: 'spec', message: 'required' },
      { name: 'two ports, one unnamed', yaml: `apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{name: http, port: 80}, {port: 443}]}\n`, path: 'spec.ports[1].name', message: 'more than one port' },
      { name: 'port out of range', yaml: `apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 70000}]}\n`, path: 'spec.ports[0].port', message: 'between 1 and 65535' },
      { name: 'nodePort unsupported', yaml: `apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80, nodePort: 30080}]}\n`, path: 'spec.ports[0].nodePort', message: 'unsupported field' },
      { name: 'wrong apiVersion', yaml: `apiVersion: apps/v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}]}\n`, path: 'apiVersion', message: 'served as v1' },
      { name: 'dotted name', yaml: `apiVersion: v1\nkind: Service\nmetadata: {name: web.v1}\nspec: {ports: [{port: 80}]}\n`, path: 'metadata.name', message: 'RFC 1123 label' },
      { name: 'clusterIPs disagree with clusterIP', yaml: `apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {clusterIP: 10.96.0.10, clusterIPs: [10.96.0.11], ports: [{port: 80}]}\n`, path: 'spec.clusterIPs[0]', message: 'must equal spec.clusterIP' },
    ],
  },

  Workload: {
    good: [
      { name: 'minimal pod registration', yaml: `apiVersion: ambit.io/v1alpha1\nkind: Workload\nmetadata: {name: web-7d9f-abc, namespace: demo}\nspec: {node: node-1, addresses: [10.244.1.12]}\n` },
      {
        name: 'dual stack, all fields',
        yaml: `
apiVersion: ambit.io/v1alpha1
kind: Workload
metadata:
  name: api-0
  namespace: demo
  labels: {app: api, version: v1}
spec:
  node: node-2
  serviceAccount: api
  addresses: [10.244.2.7, "fd00::7"]
  protocol: TCP
  uid: 0b6c4d7e-1111-4000-8000-000000000002
  network: net-1
`,
      },
    ],
    bad: [
      { name: 'no addresses', yaml: `apiVersion: ambit.io/v1alpha1\nkind: Workload\nmetadata: {name: w}\nspec: {node: n, addresses: []}\n`, path: 'spec.addresses', message: 'at least one address' },
      { name: 'duplicate address', yaml: `apiVersion: ambit.io/v1alpha1\nkind: Workload\nmetadata: {name: w}\nspec: {node: n, addresses: [10.0.0.1, 10.0.0.1]}\n`, path: 'spec.addresses[1]', message: 'duplicate address' },
      { name: 'missing node', yaml: `apiVersion: ambit.io/v1alpha1\nkind: Workload\nmetadata: {name: w}\nspec: {addresses: [10.0.0.1]}\n`, path: 'spec.node', message: 'expected string' },
      { name: 'not an IP', yaml: `apiVersion: ambit.io/v1alpha1\nkind: Workload\nmetadata: {name: w}\nspec: {node: n, addresses: [web.local]}\n`, path: 'spec.addresses[0]', message: 'IPv4 or IPv6' },
      { name: 'bad protocol', yaml: `apiVersion: ambit.io/v1alpha1\nkind: Workload\nmetadata: {name: w}\nspec: {node: n, addresses: [10.0.0.1], protocol: HTTP}\n`, path: 'spec.protocol', message: 'HBONE' },
      { name: 'unsupported field', yaml: `apiVersion: ambit.io/v1alpha1\nkind: Workload\nmetadata: {name: w}\nspec: {node: n, addresses: [10.0.0.1], image: nginx}\n`, path: 'spec.image', message: 'unsupported field' },
      { name: 'wrong apiVersion', yaml: `apiVersion: v1\nkind: Workload\nmetadata: {name: w}\nspec: {node: n, addresses: [10.0.0.1]}\n`, path: 'apiVersion', message: 'ambit.io/v1alpha1' },
    ],
  },

  Node: {
    good: [
      { name: 'no spec', yaml: `apiVersion: ambit.io/v1alpha1\nkind: Node\nmetadata: {name: node-1}\n` },
      { name: 'addresses and pod CIDRs', yaml: `apiVersion: ambit.io/v1alpha1\nkind: Node\nmetadata: {name: node-1.example.internal}\nspec: {addresses: [192.168.1.10], podCIDRs: [10.244.1.0/24, "fd00:10:244:1::/64"]}\n` },
    ],
    bad: [
      { name: 'namespace on a cluster-scoped kind', yaml: `apiVersion: ambit.io/v1alpha1\nkind: Node\nmetadata: {name: node-1, namespace: demo}\n`, path: 'metadata.namespace', message: 'cluster-scoped' },
      { name: 'bad pod CIDR', yaml: `apiVersion: ambit.io/v1alpha1\nkind: Node\nmetadata: {name: node-1}\nspec: {podCIDRs: [10.244.1.0]}\n`, path: 'spec.podCIDRs[0]', message: 'CIDR' },
      { name: 'unsupported field', yaml: `apiVersion: ambit.io/v1alpha1\nkind: Node\nmetadata: {name: node-1}\nspec: {taints: []}\n`, path: 'spec.taints', message: 'unsupported field' },
      { name: 'Kubernetes apiVersion', yaml: `apiVersion: v1\nkind: Node\nmetadata: {name: node-1}\n`, path: 'apiVersion', message: 'ambit.io/v1alpha1' },
    ],
  },

  AuthorizationPolicy: {
    good: [
      { name: 'deny all (no rules)', yaml: `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: allow-nothing, namespace: foo}\nspec: {}\n` },
      { name: 'allow all (one empty rule)', yaml: `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: allow-all, namespace: foo}\nspec:\n  rules:\n  - {}\n` },
      {
        name: 'L4 allow by principal with a selector (ztunnel)',
        yaml: `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: productpage-viewer
  namespace: default
spec:
  selector:
    matchLabels:
      app: productpage
  action: ALLOW
  rules:
  - from:
    - source:
        principals:
        - cluster.local/ns/default/sa/bookinfo-gateway-istio
`,
      },
      {
        name: 'L4 deny by namespace, IP blocks and port (v1beta1)',
        yaml: `
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata:
  name: deny-dev
  namespace: foo
spec:
  action: DENY
  rules:
  - from:
    - source:
        namespaces: ["dev", "test-*"]
        notIpBlocks: ["10.0.0.0/8", "fd00::/8", "192.168.1.1"]
    to:
    - operation:
        ports: ["8080"]
    when:
    - key: destination.port
      notValues: ["15021"]
    - key: source.ip
      values: ["10.1.0.0/16"]
`,
      },
      {
        name: 'L7 on a waypoint with targetRefs (Service)',
        yaml: `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: productpage-viewer
  namespace: default
spec:
  targetRefs:
  - kind: Service
    group: ""
    name: productpage
  action: ALLOW
  rules:
  - from:
    - source:
        principals:
        - cluster.local/ns/default/sa/curl
    to:
    - operation:
        methods: ["GET"]
        paths: ["/info*", "*/health", "/"]
        hosts: ["*.example.com"]
    when:
    - key: request.auth.claims[iss]
      values: ["https://accounts.google.com"]
    - key: request.headers[x-token]
      notValues: ["guest"]
    - key: request.auth.claims[groups][admin]
      values: ["true"]
`,
      },
      {
        name: 'audit on the waypoint Gateway',
        yaml: `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit-writes, namespace: foo}
spec:
  targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}
  action: AUDIT
  rules:
  - to:
    - operation: {methods: [POST, PUT], notPaths: ["/healthz"]}
    from:
    - source: {requestPrincipals: ["*"]}
`,
      },
    ],
    bad: [
      { name: 'a ServiceEntry target (no such kind here)', yaml: `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: shop}\nspec:\n  targetRefs: [{kind: ServiceEntry, group: networking.istio.io, name: ext}]\n  action: DENY\n  rules: [{}]\n`, path: 'spec.targetRefs[0].kind', message: 'ServiceEntry is not supported' },
      { name: 'CUSTOM action', yaml: `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ext, namespace: foo}\nspec: {action: CUSTOM, rules: [{}]}\n`, path: 'spec.action', message: 'CUSTOM (external authorization, ext-authz) is not supported' },
      { name: 'provider', yaml: `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ext, namespace: foo}\nspec: {provider: {name: opa}}\n`, path: 'spec.provider', message: 'not supported' },
      { name: 'unknown action', yaml: `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {action: allow}\n`, path: 'spec.action', message: 'must be one of ALLOW, DENY, AUDIT' },
      { name: 'selector and targetRefs', yaml: `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {selector: {matchLabels: {app: a}}, targetRefs: [{kind: Service, name: a}]}\n`, path: 'spec.targetRefs', message: 'mutually exclusive' },
      { name: 'targetRef and targetRefs', yaml: `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {targetRef: {kind: Service, name: a}, targetRefs: [{kind: Service, name: b}]}\n`, path: 'spec.targetRef', message: 'mutually exclusive' },
      { name: 'unsupported target kind', yaml: `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {targetRefs: [{kind: Pod, name: a}]}\n`, path: 'spec.targetRefs[0].kind', message: 'must be one of Service, Gateway' },
      { name: 'Gateway target without its group', yaml: `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {targetRefs: [{kind: Gateway, name: waypoint}]}\n`, path: 'spec.targetRefs[0].group', message: 'gateway.networking.k8s.io' },
      { name: 'target missing name', yaml: `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {targetRefs: [{kind: Service}]}\n`, path: 'spec.targetRefs[0].name', message: 'required' },
      { name: 'cross-namespace target', yaml: `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: foo}\nspec: {targetRefs: [{kind: Service, name: a, namespace: bar}]}\n`, path: 'spec.targetRefs[0].namespace', message: 'cross-namespace' },
      { name: 'wildcard in the middle', yaml: `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {rules: [{from: [{source: {principals: ["cluster.local/ns/*/sa/web"]}}]}]}\n`, path: 'spec.rules[0].from[0].source.principals[0]', message: 'only once, at the start' },
      { name: 'path template', yaml: `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {targetRefs: [{kind: Service, name: a}], rules: [{to: [{operation: {paths: ["/api/{*}/x"]}}]}]}\n`, path: 'spec.rules[0].to[0].operation.paths[0]', message: 'path templates' },
      { name: 'ports as numbers', yaml: `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {rules: [{to: [{operation: {ports: [8080]}}]}]}\n`, path: 'spec.rules[0].to[0].operation.ports[0]', message: 'written as a string' },
      { name: 'port out of range', yaml: `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {rules: [{to: [{operation: {notPorts: ["99999"]}}]}]}\n`, path: 'spec.rules[0].to[0].operation.notPorts[0]', message: 'between 1 and 65535' },
      { name: 'bad IP block', yaml: `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {rules: [{from: [{source: {ipBlocks: ["10.0.0.0/33"]}}]}]}\n`, path: 'spec.rules[0].from[0].source.ipBlocks[0]', message: 'IP address or a CIDR' },
      { name: 'unknown source field', yaml: `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {rules: [{from: [{source: {users: [bob]}}]}]}\n`, path: 'spec.rules[0].from[0].source.users', message: 'unsupported field' },
      { name: 'empty source', yaml: `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {rules: [{from: [{source: {}}]}]}\n`, path: 'spec.rules[0].from[0].source', message: 'must not be empty' },
      { name: 'empty from list', yaml: `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {rules: [{from: []}]}\n`, path: 'spec.rules[0].from', message: 'must not be empty' },
      { name: 'unknown when key', yaml: `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {rules: [{when: [{key: request.method, values: [GET]}]}]}\n`, path: 'spec.rules[0].when[0].key', message: 'must be one of request.headers[<name>]' },
      { name: 'when without values', yaml: `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {rules: [{when: [{key: source.namespace}]}]}\n`, path: 'spec.rules[0].when[0].values', message: 'one of values or notValues' },
      { name: 'when source.ip value not an IP', yaml: `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {rules: [{when: [{key: source.ip, values: [localhost]}]}]}\n`, path: 'spec.rules[0].when[0].values[0]', message: 'IP address or a CIDR' },
      { name: 'unsupported rule field', yaml: `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {rules: [{from: [{source: {namespaces: [a]}, sources: []}]}]}\n`, path: 'spec.rules[0].from[0].sources', message: 'unsupported field' },
      { name: 'wrong apiVersion', yaml: `apiVersion: security.istio.io/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {}\n`, path: 'apiVersion', message: 'security.istio.io/v1' },
      { name: 'missing spec', yaml: `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\n`, path: 'spec', message: 'required' },
    ],
  },

  PeerAuthentication: {
    good: [
      { name: 'namespace-wide STRICT', yaml: `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: default\n  namespace: foo\nspec:\n  mtls:\n    mode: STRICT\n` },
      {
        name: 'workload with a port exception',
        yaml: `
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata:
  name: finance
  namespace: foo
spec:
  selector:
    matchLabels:
      app: finance
  mtls:
    mode: STRICT
  portLevelMtls:
    8080:
      mode: DISABLE
`,
      },
      { name: 'mesh-wide PERMISSIVE', yaml: `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: PERMISSIVE}}\n` },
      { name: 'inherit (UNSET)', yaml: `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default}\nspec: {}\n` },
    ],
    bad: [
      { name: 'unknown mode', yaml: `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default}\nspec: {mtls: {mode: strict}}\n`, path: 'spec.mtls.mode', message: 'must be one of UNSET, DISABLE, PERMISSIVE, STRICT' },
      { name: 'portLevelMtls without selector', yaml: `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default}\nspec: {portLevelMtls: {"8080": {mode: DISABLE}}}\n`, path: 'spec.portLevelMtls', message: 'requires a selector' },
      { name: 'port key not a number', yaml: `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: p}\nspec: {selector: {matchLabels: {app: a}}, portLevelMtls: {http: {mode: DISABLE}}}\n`, path: 'spec.portLevelMtls.http', message: 'port number' },
      { name: 'port key out of range', yaml: `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: p}\nspec: {selector: {matchLabels: {app: a}}, portLevelMtls: {"0": {mode: DISABLE}}}\n`, path: 'spec.portLevelMtls.0', message: 'between 1 and 65535' },
      { name: 'unsupported mtls field', yaml: `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: p}\nspec: {mtls: {mode: STRICT, minVersion: TLSV1_3}}\n`, path: 'spec.mtls.minVersion', message: 'unsupported field' },
      { name: 'targetRefs (not in PeerAuthentication)', yaml: `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: p}\nspec: {targetRefs: [{kind: Service, name: a}]}\n`, path: 'spec.targetRefs', message: 'unsupported field' },
      { name: 'selector with matchExpressions', yaml: `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: p}\nspec: {selector: {matchExpressions: []}}\n`, path: 'spec.selector.matchExpressions', message: 'unsupported field' },
      { name: 'wrong group', yaml: `apiVersion: networking.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: p}\nspec: {}\n`, path: 'apiVersion', message: 'security.istio.io/v1' },
    ],
  },

  RequestAuthentication: {
    good: [
      {
        name: 'jwksUri with a selector',
        yaml: `
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: httpbin
  namespace: foo
spec:
  selector:
    matchLabels:
      app: httpbin
  jwtRules:
  - issuer: "issuer-foo"
    jwksUri: https://example.com/.well-known/jwks.json
`,
      },
      {
        name: 'token locations and claim headers on a waypoint',
        yaml: `
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: jwt-on-waypoint
  namespace: foo
spec:
  targetRefs:
  - kind: Gateway
    group: gateway.networking.k8s.io
    name: waypoint
  jwtRules:
  - issuer: "issuer-foo"
    audiences: [bookstore_android.apps.example.com, bookstore_web.apps.example.com]
    jwksUri: http://jwks.foo.svc.cluster.local:8000/jwks.json
    fromHeaders:
    - name: x-jwt-assertion
      prefix: "Bearer "
    fromParams: [my_token]
    fromCookies: [session]
    outputPayloadToHeader: x-jwt-payload
    forwardOriginalToken: true
    outputClaimToHeaders:
    - header: x-jwt-claim-foo
      claim: foo
    timeout: 5s
`,
      },
      {
        name: 'inline jwks',
        yaml: `
apiVersion: security.istio.io/v1beta1
kind: RequestAuthentication
metadata: {name: inline, namespace: foo}
spec:
  jwtRules:
  - issuer: testing@secure.istio.io
    jwks: '{ "keys":[ {"e":"AQAB","kid":"DHFbpoIUqrY8t2zpA2qXfCmr5VO5ZEr4RzHU_-envvQ","kty":"RSA","n":"xAE7eB6qugXyCAG3yhh7pkDkT65pHymX-P7KfIupjf59vsdo91bSP9C8H07pSAGQO1MV_xFj9VswgsCg4R6otmg5PV2He95lZdHtOcU5DXIg_pbhLdKXbi66GlVeK6ABZOUW3WYtnNHD-91gVuoeJT_DwtGGcp4ignkgXfkiEm4sw-4sfb4qdt5oLbyVpmW6x9cfa7vs2WTfURiCrBoUqgBo_-4WTiULmmHSGZHOjzwa8WtrtOQGsAFjIbno85jp6MnGGGZPYZbDAa_b3y5u-YpW7ypZrvD8BgtKVjgtQgZhLAGezMt0ua3DRrWnKqTZ0BJ_EyxOGuHJrLsn00fnMQ"}]}'
`,
      },
    ],
    bad: [
      { name: 'jwks and jwksUri', yaml: `apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: r}\nspec: {jwtRules: [{issuer: a, jwksUri: "https://a/jwks", jwks: '{"keys": []}'}]}\n`, path: 'spec.jwtRules[0].jwks', message: 'jwks and jwksUri are mutually exclusive' },
      { name: 'missing issuer', yaml: `apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: r}\nspec: {jwtRules: [{jwksUri: "https://a/jwks"}]}\n`, path: 'spec.jwtRules[0].issuer', message: 'required' },
      { name: 'jwksUri not http', yaml: `apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: r}\nspec: {jwtRules: [{issuer: a, jwksUri: "file:///etc/jwks.json"}]}\n`, path: 'spec.jwtRules[0].jwksUri', message: 'http:// or https:// URL' },
      { name: 'jwks not JSON', yaml: `apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: r}\nspec: {jwtRules: [{issuer: a, jwks: "keys: []"}]}\n`, path: 'spec.jwtRules[0].jwks', message: 'must be a JSON Web Key Set' },
      { name: 'jwks without keys', yaml: `apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: r}\nspec: {jwtRules: [{issuer: a, jwks: '{"kty": "RSA"}'}]}\n`, path: 'spec.jwtRules[0].jwks', message: '"keys" array' },
      { name: 'bad timeout', yaml: `apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: r}\nspec: {jwtRules: [{issuer: a, timeout: 5}]}\n`, path: 'spec.jwtRules[0].timeout', message: 'expected string' },
      { name: 'header without name', yaml: `apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: r}\nspec: {jwtRules: [{issuer: a, fromHeaders: [{prefix: "Bearer "}]}]}\n`, path: 'spec.jwtRules[0].fromHeaders[0].name', message: 'required' },
      { name: 'claim header with a bad name', yaml: `apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: r}\nspec: {jwtRules: [{issuer: a, outputClaimToHeaders: [{header: "x claim", claim: sub}]}]}\n`, path: 'spec.jwtRules[0].outputClaimToHeaders[0].header', message: 'HTTP header name' },
      { name: 'unsupported jwtRule field', yaml: `apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: r}\nspec: {jwtRules: [{issuer: a, jwksUri: "https://a/jwks", cacheDuration: 5m}]}\n`, path: 'spec.jwtRules[0].cacheDuration', message: 'unsupported field' },
      { name: 'selector and targetRefs', yaml: `apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: r}\nspec: {selector: {matchLabels: {app: a}}, targetRefs: [{kind: Service, name: a}], jwtRules: [{issuer: a}]}\n`, path: 'spec.targetRefs', message: 'mutually exclusive' },
    ],
  },

  Gateway: {
    good: [
      {
        name: 'waypoint',
        yaml: `
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: waypoint
  namespace: default
  labels:
    istio.io/waypoint-for: service
spec:
  gatewayClassName: istio-waypoint
  listeners:
  - name: mesh
    port: 15008
    protocol: HBONE
`,
      },
      {
        name: 'HTTP listener limited to the same namespace (v1beta1)',
        yaml: `
apiVersion: gateway.networking.k8s.io/v1beta1
kind: Gateway
metadata:
  name: prod-web
spec:
  gatewayClassName: example
  listeners:
  - protocol: HTTP
    port: 80
    name: prod-web-gw
    allowedRoutes:
      namespaces:
        from: Same
`,
      },
      {
        name: 'HTTPS with certificate and namespace selector',
        yaml: `
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: shared-gateway
  namespace: infra-ns
spec:
  gatewayClassName: istio
  addresses:
  - value: 10.96.0.200
  - type: Hostname
    value: gw.example.com
  listeners:
  - name: https
    hostname: "*.example.com"
    protocol: HTTPS
    port: 443
    tls:
      mode: Terminate
      certificateRefs:
      - kind: Secret
        group: ""
        name: example-com-cert
    allowedRoutes:
      namespaces:
        from: Selector
        selector:
          matchLabels:
            shared-gateway-access: "true"
      kinds:
      - kind: HTTPRoute
  - name: tls-passthrough
    protocol: TLS
    port: 8443
    hostname: db.example.com
    tls:
      mode: Passthrough
  - name: raw
    protocol: TCP
    port: 9000
    allowedRoutes:
      namespaces:
        from: All
`,
      },
    ],
    bad: [
      { name: 'waypoint without an HBONE listener', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: waypoint}\nspec: {gatewayClassName: istio-waypoint, listeners: [{name: mesh, port: 15008, protocol: HTTP}]}\n`, path: 'spec.listeners', message: 'needs a listener with protocol HBONE on port 15008' },
      { name: 'duplicate listener names', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec: {gatewayClassName: istio, listeners: [{name: http, port: 80, protocol: HTTP}, {name: http, port: 8080, protocol: HTTP}]}\n`, path: 'spec.listeners[1].name', message: 'duplicate listener name' },
      { name: 'missing gatewayClassName', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec: {listeners: [{name: http, port: 80, protocol: HTTP}]}\n`, path: 'spec.gatewayClassName', message: 'required' },
      { name: 'no listeners', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec: {gatewayClassName: istio, listeners: []}\n`, path: 'spec.listeners', message: 'at least one listener' },
      { name: 'unknown protocol', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec: {gatewayClassName: istio, listeners: [{name: h3, port: 443, protocol: QUIC}]}\n`, path: 'spec.listeners[0].protocol', message: 'must be one of HTTP, HTTPS' },
      { name: 'HTTPS without tls', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec: {gatewayClassName: istio, listeners: [{name: https, port: 443, protocol: HTTPS}]}\n`, path: 'spec.listeners[0].tls', message: 'required for protocol HTTPS' },
      { name: 'Selector without selector', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec: {gatewayClassName: istio, listeners: [{name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: Selector}}}]}\n`, path: 'spec.listeners[0].allowedRoutes.namespaces.selector', message: 'required when from is Selector' },
      { name: 'unsupported route kind', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec: {gatewayClassName: istio, listeners: [{name: tcp, port: 9000, protocol: TCP, allowedRoutes: {kinds: [{kind: TCPRoute}]}}]}\n`, path: 'spec.listeners[0].allowedRoutes.kinds[0].kind', message: 'must be one of HTTPRoute, GRPCRoute' },
      { name: 'unsupported listener field', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec: {gatewayClassName: istio, listeners: [{name: http, port: 80, protocol: HTTP, proxyProtocol: true}]}\n`, path: 'spec.listeners[0].proxyProtocol', message: 'unsupported field' },
      { name: 'unsupported spec field', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec: {gatewayClassName: istio, infrastructure: {labels: {a: b}}, listeners: [{name: http, port: 80, protocol: HTTP}]}\n`, path: 'spec.infrastructure', message: 'unsupported field' },
      { name: 'bad address', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec: {gatewayClassName: istio, addresses: [{value: 10.0.0.300}], listeners: [{name: http, port: 80, protocol: HTTP}]}\n`, path: 'spec.addresses[0].value', message: 'IPv4 or IPv6' },
      { name: 'uppercase hostname', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec: {gatewayClassName: istio, listeners: [{name: http, port: 80, protocol: HTTP, hostname: Example.com}]}\n`, path: 'spec.listeners[0].hostname', message: 'lowercase DNS name' },
      { name: 'alpha apiVersion', yaml: `apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: Gateway\nmetadata: {name: g}\nspec: {gatewayClassName: istio, listeners: [{name: http, port: 80, protocol: HTTP}]}\n`, path: 'apiVersion', message: 'gateway.networking.k8s.io/v1' },
    ],
  },

  HTTPRoute: {
    good: [
      {
        name: 'an empty replacePrefixMatch (the spec table has it)',
        yaml: `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: strip, namespace: shop}
spec:
  rules:
  - matches: [{path: {type: PathPrefix, value: /foo}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: ""}}}]
    backendRefs: [{name: web, port: 80}]
`,
      },
      {
        name: 'RE2 syntax: a regex path without a leading slash, (?i) and a named group',
        yaml: `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: re2, namespace: shop}
spec:
  rules:
  - matches:
    - path: {type: RegularExpression, value: ".*\\\\.jpg"}
    - headers: [{type: RegularExpression, name: x-user, value: "(?i)jason"}]
    - queryParams: [{type: RegularExpression, name: v, value: "(?P<major>v[0-9])"}]
`,
      },
      {
        name: 'prefix match to a Gateway, defaults filled',
        yaml: `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: foo-route
spec:
  parentRefs:
  - name: example-gateway
  hostnames:
  - "foo.example.com"
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: /login
    backendRefs:
    - name: foo-svc
      port: 8080
`,
      },
      {
        name: 'GAMMA 90/10 split attached to a Service',
        yaml: `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: reviews
spec:
  parentRefs:
  - group: ""
    kind: Service
    name: reviews
    port: 9080
  rules:
  - backendRefs:
    - name: reviews-v1
      port: 9080
      weight: 90
    - name: reviews-v2
      port: 9080
      weight: 10
`,
      },
      {
        name: 'headers, query params, method, header modifiers, timeouts, retry',
        yaml: `
apiVersion: gateway.networking.k8s.io/v1beta1
kind: HTTPRoute
metadata:
  name: bar-route
spec:
  parentRefs:
  - name: example-gateway
    sectionName: http
  hostnames: ["bar.example.com", "*.bar.example.com"]
  rules:
  - name: canary
    matches:
    - headers:
      - type: Exact
        name: env
        value: canary
      - type: RegularExpression
        name: x-user
        value: "^(alice|bob)$"
      queryParams:
      - name: debug
        value: "1"
      method: GET
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set:
        - name: x-canary
          value: "true"
        add:
        - name: my-header
          value: foo
        remove: ["x-legacy"]
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        add:
        - name: x-served-by
          value: canary
    backendRefs:
    - name: bar-svc-canary
      port: 8080
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier:
          set: [{name: x-backend, value: canary}]
    timeouts:
      request: 10s
      backendRequest: 2s
    retry:
      codes: [500, 502, 503]
      attempts: 2
      backoff: 100ms
  - matches:
    - path:
        type: RegularExpression
        value: "/users/[0-9]+"
    backendRefs:
    - name: bar-svc
      port: 8080
`,
      },
      {
        name: 'HTTPS redirect',
        yaml: `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: http-filter-redirect
spec:
  parentRefs:
  - name: redirect-gateway
    sectionName: http
  hostnames:
  - redirect.example
  rules:
    - filters:
      - type: RequestRedirect
        requestRedirect:
          scheme: https
          statusCode: 301
`,
      },
      {
        name: 'prefix rewrite and mirror',
        yaml: `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: http-filter-rewrite
spec:
  hostnames:
    - rewrite.example
  rules:
    - matches:
      - path:
          type: PathPrefix
          value: /prefix/one
      filters:
      - type: URLRewrite
        urlRewrite:
          hostname: elsewhere.example
          path:
            type: ReplacePrefixMatch
            replacePrefixMatch: /two
      - type: RequestMirror
        requestMirror:
          backendRef:
            name: example-svc-shadow
            port: 80
          percent: 10
      backendRefs:
      - name: example-svc
        weight: 1
        port: 80
`,
      },
    ],
    bad: [
      { name: 'filter type without its config', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {rules: [{filters: [{type: RequestRedirect}]}]}\n`, path: 'spec.rules[0].filters[0].requestRedirect', message: 'required when type is RequestRedirect' },
      { name: 'filter with a second config', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {rules: [{filters: [{type: RequestRedirect, requestRedirect: {scheme: https}, urlRewrite: {hostname: a.example}}]}]}\n`, path: 'spec.rules[0].filters[0].urlRewrite', message: 'must not be set when type is RequestRedirect' },
      { name: 'redirect with backendRefs', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {rules: [{filters: [{type: RequestRedirect, requestRedirect: {scheme: https}}], backendRefs: [{name: web, port: 80}]}]}\n`, path: 'spec.rules[0].backendRefs', message: 'RequestRedirect' },
      { name: 'ExtensionRef', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {rules: [{filters: [{type: ExtensionRef, extensionRef: {group: example.com, kind: Auth, name: a}}]}]}\n`, path: 'spec.rules[0].filters[0].type', message: 'ExtensionRef filters are not supported' },
      { name: 'path not starting with /', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {rules: [{matches: [{path: {type: Exact, value: login}}]}]}\n`, path: 'spec.rules[0].matches[0].path.value', message: 'must start with "/"' },
      { name: 'bad path match type', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {rules: [{matches: [{path: {type: Prefix, value: /}}]}]}\n`, path: 'spec.rules[0].matches[0].path.type', message: 'must be one of Exact, PathPrefix, RegularExpression' },
      { name: 'a lookahead (not RE2: backtracking only)', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {rules: [{matches: [{path: {type: RegularExpression, value: "(?!/admin).*"}}]}]}\n`, path: 'spec.rules[0].matches[0].path.value', message: 'not a valid regular expression (RE2 syntax)' },
      { name: 'a backreference (not RE2)', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {rules: [{matches: [{headers: [{type: RegularExpression, name: x-a, value: "(a)\\\\1"}]}]}]}\n`, path: 'spec.rules[0].matches[0].headers[0].value', message: 'RE2 syntax' },
      { name: 'regex that does not compile', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {rules: [{matches: [{headers: [{type: RegularExpression, name: x-user, value: "(alice"}]}]}]}\n`, path: 'spec.rules[0].matches[0].headers[0].value', message: 'not a valid regular expression' },
      { name: 'ReplacePrefixMatch with an Exact match', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {rules: [{matches: [{path: {type: Exact, value: /a}}], filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /b}}}], backendRefs: [{name: web, port: 80}]}]}\n`, path: 'spec.rules[0].filters[0].urlRewrite.path.type', message: 'exactly one match, with a PathPrefix path' },
      { name: 'path modifier missing its value', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {rules: [{filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, replacePrefixMatch: /b}}}]}]}\n`, path: 'spec.rules[0].filters[0].urlRewrite.path.replaceFullPath', message: 'required when type is ReplaceFullPath' },
      { name: 'Service backend without port', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {rules: [{backendRefs: [{name: web}]}]}\n`, path: 'spec.rules[0].backendRefs[0].port', message: 'required for a Service backend' },
      { name: 'weight out of range', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {rules: [{backendRefs: [{name: web, port: 80, weight: -1}]}]}\n`, path: 'spec.rules[0].backendRefs[0].weight', message: 'between 0 and 1000000' },
      { name: 'unsupported backend kind', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {rules: [{backendRefs: [{kind: Pod, name: web, port: 80}]}]}\n`, path: 'spec.rules[0].backendRefs[0].kind', message: 'must be one of Service' },
      { name: 'bad redirect status', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {rules: [{filters: [{type: RequestRedirect, requestRedirect: {statusCode: 200}}]}]}\n`, path: 'spec.rules[0].filters[0].requestRedirect.statusCode', message: 'must be one of 301, 302, 303, 307, 308' },
      { name: 'bad method', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {rules: [{matches: [{method: get}]}]}\n`, path: 'spec.rules[0].matches[0].method', message: 'must be one of GET' },
      { name: 'Istio-style duration', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {rules: [{timeouts: {request: 1.5s}}]}\n`, path: 'spec.rules[0].timeouts.request', message: 'Gateway API duration' },
      { name: 'backendRequest longer than request', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {rules: [{timeouts: {request: 1s, backendRequest: 2s}}]}\n`, path: 'spec.rules[0].timeouts.backendRequest', message: 'must not be longer than request' },
      { name: 'retry code not an error', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {rules: [{retry: {codes: [302]}}]}\n`, path: 'spec.rules[0].retry.codes[0]', message: 'between 400 and 599' },
      { name: 'duplicate header match', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {rules: [{matches: [{headers: [{name: X-A, value: "1"}, {name: x-a, value: "2"}]}]}]}\n`, path: 'spec.rules[0].matches[0].headers[1].name', message: 'duplicate header' },
      { name: 'Service parent without group ""', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {parentRefs: [{kind: Service, name: web}]}\n`, path: 'spec.parentRefs[0].group', message: 'must be "" for kind Service' },
      { name: 'sessionPersistence unsupported', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {rules: [{sessionPersistence: {sessionName: s}}]}\n`, path: 'spec.rules[0].sessionPersistence', message: 'unsupported field' },
      { name: 'unsupported match field', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {rules: [{matches: [{path: {value: /a, caseInsensitive: true}}]}]}\n`, path: 'spec.rules[0].matches[0].path.caseInsensitive', message: 'unsupported field' },
      { name: 'wildcard hostname in the middle', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {hostnames: ["foo.*.example.com"]}\n`, path: 'spec.hostnames[0]', message: 'lowercase DNS name' },
      { name: 'mirror with percent and fraction', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {rules: [{filters: [{type: RequestMirror, requestMirror: {backendRef: {name: s, port: 80}, percent: 5, fraction: {numerator: 1}}}]}]}\n`, path: 'spec.rules[0].filters[0].requestMirror.fraction', message: 'mutually exclusive' },
      { name: 'wrong apiVersion', yaml: `apiVersion: networking.istio.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {}\n`, path: 'apiVersion', message: 'gateway.networking.k8s.io/v1' },
    ],
  },

  GRPCRoute: {
    good: [
      {
        name: 'service/method and header matches',
        yaml: `
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata:
  name: foo-route
spec:
  parentRefs:
  - name: example-gateway
  hostnames:
  - "foo.example.com"
  rules:
  - matches:
    - method:
        service: com.example.User
        method: Login
    backendRefs:
    - name: foo-svc
      port: 50051
  - matches:
    - headers:
      - type: Exact
        name: magic
        value: foo
      method:
        service: com.Example.Login
        method: Login
    backendRefs:
    - name: foo-svc
      port: 50051
`,
      },
      {
        name: 'regex service, filters, weights, v1alpha2',
        yaml: `
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: GRPCRoute
metadata:
  name: greeter
spec:
  parentRefs:
  - group: ""
    kind: Service
    name: greeter
    port: 50051
  rules:
  - matches:
    - method:
        type: RegularExpression
        service: "helloworld\\\\..*"
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        add: [{name: x-route, value: grpc}]
    - type: RequestMirror
      requestMirror:
        backendRef: {name: greeter-shadow, port: 50051}
    backendRefs:
    - name: greeter-v1
      port: 50051
      weight: 80
    - name: greeter-v2
      port: 50051
      weight: 20
`,
      },
    ],
    bad: [
      { name: 'method match with neither service nor method', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: g}\nspec: {rules: [{matches: [{method: {type: Exact}}]}]}\n`, path: 'spec.rules[0].matches[0].method', message: 'one or both of service and method' },
      { name: 'service with a slash', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: g}\nspec: {rules: [{matches: [{method: {service: helloworld/Greeter}}]}]}\n`, path: 'spec.rules[0].matches[0].method.service', message: 'gRPC service name' },
      { name: 'regex method that does not compile', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: g}\nspec: {rules: [{matches: [{method: {type: RegularExpression, method: "Say[Hello"}}]}]}\n`, path: 'spec.rules[0].matches[0].method.method', message: 'not a valid regular expression' },
      { name: 'RequestRedirect (HTTP only)', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: g}\nspec: {rules: [{filters: [{type: RequestRedirect}]}]}\n`, path: 'spec.rules[0].filters[0].type', message: 'must be one of RequestHeaderModifier, ResponseHeaderModifier, RequestMirror' },
      { name: 'ExtensionRef', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: g}\nspec: {rules: [{filters: [{type: ExtensionRef}]}]}\n`, path: 'spec.rules[0].filters[0].type', message: 'ExtensionRef filters are not supported' },
      { name: 'HTTP match field', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: g}\nspec: {rules: [{matches: [{path: {value: /}}]}]}\n`, path: 'spec.rules[0].matches[0].path', message: 'unsupported field' },
      { name: 'timeouts (HTTPRoute only)', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: g}\nspec: {rules: [{timeouts: {request: 1s}}]}\n`, path: 'spec.rules[0].timeouts', message: 'unsupported field' },
      { name: 'backend without port', yaml: `apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: g}\nspec: {rules: [{backendRefs: [{name: greeter}]}]}\n`, path: 'spec.rules[0].backendRefs[0].port', message: 'required for a Service backend' },
      { name: 'never-served v1beta1', yaml: `apiVersion: gateway.networking.k8s.io/v1beta1\nkind: GRPCRoute\nmetadata: {name: g}\nspec: {}\n`, path: 'apiVersion', message: 'v1alpha2' },
    ],
  },

  DestinationRule: {
    good: [
      {
        name: 'subsets',
        yaml: `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews-destination
spec:
  host: reviews.prod.svc.cluster.local
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
`,
      },
      {
        name: 'connection pool with TCP keepalive (v1alpha3)',
        yaml: `
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: bookinfo-redis
spec:
  host: myredissrv.prod.svc.cluster.local
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: 100
        connectTimeout: 30ms
        tcpKeepalive:
          time: 7200s
          interval: 75s
`,
      },
      {
        name: 'outlier detection and http pool',
        yaml: `
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: reviews-cb-policy
spec:
  host: reviews.prod.svc.cluster.local
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: 100
        maxConnectionDuration: 30m
      http:
        http2MaxRequests: 1000
        maxRequestsPerConnection: 10
        http1MaxPendingRequests: 64
        maxRetries: 3
        idleTimeout: 60s
        h2UpgradePolicy: UPGRADE
        useClientProtocol: false
    outlierDetection:
      consecutive5xxErrors: 7
      consecutiveGatewayErrors: 3
      interval: 5m
      baseEjectionTime: 15m
      maxEjectionPercent: 50
      minHealthPercent: 30
`,
      },
      {
        name: 'consistent hash, port-level settings, subset policy',
        yaml: `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: bookinfo-ratings
spec:
  host: ratings.prod.svc.cluster.local
  exportTo: [".", "istio-system"]
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpCookie:
          name: user
          ttl: 0s
    portLevelSettings:
    - port:
        number: 80
      loadBalancer:
        simple: LEAST_REQUEST
    - port:
        number: 9080
      loadBalancer:
        consistentHash:
          httpHeaderName: x-user
  subsets:
  - name: testversion
    labels:
      version: v3
    trafficPolicy:
      loadBalancer:
        simple: ROUND_ROBIN
`,
      },
      { name: 'deprecated LEAST_CONN', yaml: `apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec: {host: "*.example.com", trafficPolicy: {loadBalancer: {simple: LEAST_CONN}}}\n` },
    ],
    bad: [
      { name: 'tls', yaml: `apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec: {host: reviews, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}\n`, path: 'spec.trafficPolicy.tls', message: 'the mesh provides mutual TLS' },
      { name: 'tls at port level', yaml: `apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec: {host: reviews, trafficPolicy: {portLevelSettings: [{port: {number: 443}, tls: {mode: SIMPLE}}]}}\n`, path: 'spec.trafficPolicy.portLevelSettings[0].tls', message: 'the mesh provides mutual TLS' },
      { name: 'missing host', yaml: `apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec: {subsets: [{name: v1}]}\n`, path: 'spec.host', message: 'required' },
      { name: 'duplicate subset', yaml: `apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}, {name: v1, labels: {version: v2}}]}\n`, path: 'spec.subsets[1].name', message: 'duplicate subset name' },
      { name: 'subset without name', yaml: `apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec: {host: reviews, subsets: [{labels: {version: v1}}]}\n`, path: 'spec.subsets[0].name', message: 'required' },
      { name: 'simple and consistentHash', yaml: `apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec: {host: reviews, trafficPolicy: {loadBalancer: {simple: RANDOM, consistentHash: {useSourceIp: true}}}}\n`, path: 'spec.trafficPolicy.loadBalancer.consistentHash', message: 'mutually exclusive' },
      { name: 'consistentHash with two keys', yaml: `apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec: {host: reviews, trafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true, httpHeaderName: x-user}}}}\n`, path: 'spec.trafficPolicy.loadBalancer.consistentHash', message: 'exactly one of httpHeaderName' },
      { name: 'unknown simple policy', yaml: `apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec: {host: reviews, trafficPolicy: {loadBalancer: {simple: WEIGHTED}}}\n`, path: 'spec.trafficPolicy.loadBalancer.simple', message: 'must be one of' },
      { name: 'maxEjectionPercent over 100', yaml: `apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec: {host: reviews, trafficPolicy: {outlierDetection: {maxEjectionPercent: 150}}}\n`, path: 'spec.trafficPolicy.outlierDetection.maxEjectionPercent', message: 'between 0 and 100' },
      { name: 'zero connect timeout', yaml: `apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec: {host: reviews, trafficPolicy: {connectionPool: {tcp: {connectTimeout: 0s}}}}\n`, path: 'spec.trafficPolicy.connectionPool.tcp.connectTimeout', message: 'at least 1ms' },
      { name: 'useClientProtocol not a boolean', yaml: `apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec: {host: reviews, trafficPolicy: {connectionPool: {http: {useClientProtocol: "yes"}}}}\n`, path: 'spec.trafficPolicy.connectionPool.http.useClientProtocol', message: 'true or false' },
      { name: 'zero maxConnectionDuration', yaml: `apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec: {host: reviews, trafficPolicy: {connectionPool: {tcp: {maxConnectionDuration: 0s}}}}\n`, path: 'spec.trafficPolicy.connectionPool.tcp.maxConnectionDuration', message: 'at least 1ms' },
      { name: 'unsupported field deep in a subset', yaml: `apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec: {host: reviews, subsets: [{name: v1, trafficPolicy: {loadBalancer: {localityLbSetting: {enabled: true}}}}]}\n`, path: 'spec.subsets[0].trafficPolicy.loadBalancer.localityLbSetting', message: 'unsupported field' },
      { name: 'workloadSelector', yaml: `apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec: {host: reviews, workloadSelector: {matchLabels: {app: a}}}\n`, path: 'spec.workloadSelector', message: 'unsupported field' },
      { name: 'bad exportTo', yaml: `apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec: {host: reviews, exportTo: ["Not_A_Namespace"]}\n`, path: 'spec.exportTo[0]', message: 'namespace name' },
    ],
  },

  VirtualService: {
    good: [
      {
        name: 'match, rewrite and subsets',
        yaml: `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews-route
spec:
  hosts:
  - reviews.prod.svc.cluster.local
  http:
  - name: "reviews-v2-routes"
    match:
    - uri:
        prefix: "/wpcatalog"
    - uri:
        prefix: "/consumercatalog"
    rewrite:
      uri: "/newcatalog"
    route:
    - destination:
        host: reviews.prod.svc.cluster.local
        subset: v2
  - name: "reviews-v1-route"
    route:
    - destination:
        host: reviews.prod.svc.cluster.local
        subset: v1
`,
      },
      {
        name: 'retries and weighted split (v1beta1)',
        yaml: `
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: ratings
spec:
  hosts:
  - ratings.prod.svc.cluster.local
  http:
  - route:
    - destination:
        host: ratings.prod.svc.cluster.local
        subset: v1
      weight: 75
    - destination:
        host: ratings.prod.svc.cluster.local
        subset: v2
      weight: 25
    timeout: 10s
    retries:
      attempts: 3
      perTryTimeout: 2s
      retryOn: gateway-error,connect-failure,refused-stream,503
      retryRemoteLocalities: true
`,
      },
      {
        name: 'fault injection by header and source labels (v1alpha3)',
        yaml: `
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: ratings-fault
spec:
  hosts:
  - ratings
  http:
  - match:
    - headers:
        end-user:
          exact: jason
      sourceLabels:
        env: prod
    fault:
      delay:
        percentage:
          value: 0.1
        fixedDelay: 5s
      abort:
        percentage:
          value: 10
        httpStatus: 400
    route:
    - destination:
        host: ratings
        subset: v1
  - fault:
      abort:
        grpcStatus: UNAVAILABLE
    route:
    - destination:
        host: ratings
        subset: v1
`,
      },
      {
        name: 'mirror, CORS, headers, redirect',
        yaml: `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts:
  - httpbin
  - "*.httpbin.example.com"
  gateways: [mesh, istio-system/public]
  http:
  - match:
    - uri:
        exact: /v1/getProductRatings
      ignoreUriCase: true
    redirect:
      uri: /v1/bookRatings
      authority: newratings.default.svc.cluster.local
      redirectCode: 301
  - match:
    - queryParams:
        debug:
          exact: "1"
      withoutHeaders:
        x-skip: {}
      method:
        exact: GET
      port: 8000
    route:
    - destination:
        host: httpbin
        subset: v1
        port:
          number: 8000
      weight: 100
      headers:
        response:
          remove: [server]
    mirror:
      host: httpbin
      subset: v2
    mirrorPercentage:
      value: 100.0
    corsPolicy:
      allowOrigins:
      - exact: https://example.com
      - regex: "https://.*\\\\.example\\\\.org"
      allowMethods:
      - POST
      - GET
      allowCredentials: false
      allowHeaders:
      - X-Foo-Bar
      maxAge: "24h"
    headers:
      request:
        set:
          test: "true"
  - route:
    - destination: {host: httpbin, subset: v1}
    mirrors:
    - destination: {host: httpbin-shadow}
      percentage: {value: 5}
`,
      },
    ],
    bad: [
      { name: 'tcp routes', yaml: `apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec: {hosts: [mongo], tcp: [{route: [{destination: {host: mongo}}]}]}\n`, path: 'spec.tcp', message: 'only http routes are supported' },
      { name: 'tls routes', yaml: `apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec: {hosts: [a.example], tls: [{match: [{sniHosts: [a.example]}], route: [{destination: {host: a}}]}]}\n`, path: 'spec.tls', message: 'only http routes are supported' },
      { name: 'weights not adding to 100', yaml: `apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec: {hosts: [r], http: [{route: [{destination: {host: r, subset: v1}, weight: 50}, {destination: {host: r, subset: v2}, weight: 40}]}]}\n`, path: 'spec.http[0].route', message: 'weights must add up to 100 (they add up to 90)' },
      { name: 'no hosts', yaml: `apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec: {hosts: [], http: []}\n`, path: 'spec.hosts', message: 'at least one host' },
      { name: 'missing hosts', yaml: `apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec: {http: []}\n`, path: 'spec.hosts', message: 'required' },
      { name: 'string match with two kinds', yaml: `apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec: {hosts: [r], http: [{match: [{uri: {prefix: /a, exact: /a}}], route: [{destination: {host: r}}]}]}\n`, path: 'spec.http[0].match[0].uri', message: 'exactly one of exact, prefix, regex' },
      { name: 'empty uri match', yaml: `apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec: {hosts: [r], http: [{match: [{uri: {}}], route: [{destination: {host: r}}]}]}\n`, path: 'spec.http[0].match[0].uri', message: 'one of exact, prefix, regex is required' },
      { name: 'regex that does not compile', yaml: `apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec: {hosts: [r], http: [{match: [{headers: {x-user: {regex: "[a-"}}}], route: [{destination: {host: r}}]}]}\n`, path: 'spec.http[0].match[0].headers.x-user.regex', message: 'not a valid regular expression' },
      { name: 'prefix match on a query parameter', yaml: `apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec: {hosts: [r], http: [{match: [{queryParams: {q: {prefix: a}}}], route: [{destination: {host: r}}]}]}\n`, path: 'spec.http[0].match[0].queryParams.q.prefix', message: 'use exact or regex' },
      { name: 'bad retryOn', yaml: `apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec: {hosts: [r], http: [{route: [{destination: {host: r}}], retries: {attempts: 3, retryOn: "5xx,timeout"}}]}\n`, path: 'spec.http[0].retries.retryOn', message: '"timeout" is not a retry condition' },
      { name: 'fault percentage over 100', yaml: `apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec: {hosts: [r], http: [{route: [{destination: {host: r}}], fault: {delay: {fixedDelay: 1s, percentage: {value: 150}}}}]}\n`, path: 'spec.http[0].fault.delay.percentage.value', message: 'between 0 and 100' },
      { name: 'abort with both statuses', yaml: `apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec: {hosts: [r], http: [{route: [{destination: {host: r}}], fault: {abort: {httpStatus: 503, grpcStatus: UNAVAILABLE}}}]}\n`, path: 'spec.http[0].fault.abort', message: 'exactly one of httpStatus and grpcStatus' },
      { name: 'abort status out of range', yaml: `apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec: {hosts: [r], http: [{route: [{destination: {host: r}}], fault: {abort: {httpStatus: 600}}}]}\n`, path: 'spec.http[0].fault.abort.httpStatus', message: 'between 200 and 599' },
      { name: 'route and redirect', yaml: `apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec: {hosts: [r], http: [{route: [{destination: {host: r}}], redirect: {uri: /b}}]}\n`, path: 'spec.http[0].redirect', message: 'mutually exclusive' },
      { name: 'neither route nor redirect', yaml: `apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec: {hosts: [r], http: [{timeout: 1s}]}\n`, path: 'spec.http[0]', message: 'one of route or redirect is required' },
      { name: 'destination without host', yaml: `apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec: {hosts: [r], http: [{route: [{destination: {subset: v1}}]}]}\n`, path: 'spec.http[0].route[0].destination.host', message: 'required' },
      { name: 'directResponse unsupported', yaml: `apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec: {hosts: [r], http: [{directResponse: {status: 503}}]}\n`, path: 'spec.http[0].directResponse', message: 'unsupported field' },
      { name: 'unsupported field deep in a rewrite', yaml: `apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec: {hosts: [r], http: [{route: [{destination: {host: r}}], rewrite: {uriRegexRewrite: {match: a, rewrite: b}}}]}\n`, path: 'spec.http[0].rewrite.uriRegexRewrite', message: 'unsupported field' },
      { name: 'bad duration', yaml: `apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec: {hosts: [r], http: [{route: [{destination: {host: r}}], timeout: 10}]}\n`, path: 'spec.http[0].timeout', message: 'expected string' },
      { name: 'mirror and mirrors', yaml: `apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec: {hosts: [r], http: [{route: [{destination: {host: r}}], mirror: {host: s}, mirrors: [{destination: {host: t}}]}]}\n`, path: 'spec.http[0].mirrors', message: 'mutually exclusive' },
      { name: 'wrong apiVersion', yaml: `apiVersion: networking.istio.io/v2\nkind: VirtualService\nmetadata: {name: v}\nspec: {hosts: [r]}\n`, path: 'apiVersion', message: 'networking.istio.io/v1' },
    ],
  },

  WorkloadEntry: {
    good: [
      {
        name: 'VM by IP',
        yaml: `
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: details-svc
spec:
  serviceAccount: details-legacy
  address: 2.2.2.2
  labels:
    app: details-legacy
    instance-id: vm1
`,
      },
      {
        name: 'VM by hostname with ports, locality and weight (v1beta1)',
        yaml: `
apiVersion: networking.istio.io/v1beta1
kind: WorkloadEntry
metadata:
  name: details-svc-vm1
  namespace: bookinfo
spec:
  serviceAccount: details-legacy
  address: vm1.vpc01.corp.net
  ports:
    http: 8080
    grpc-status: 9090
  labels:
    app: details-legacy
  network: vpc01
  locality: us-east1/us-east1-b/rack-3
  weight: 2
`,
      },
      { name: 'IPv6 (v1alpha3)', yaml: `apiVersion: networking.istio.io/v1alpha3\nkind: WorkloadEntry\nmetadata: {name: v6}\nspec: {address: "2001:db8::10"}\n` },
    ],
    bad: [
      { name: 'missing address', yaml: `apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: w}\nspec: {labels: {app: a}}\n`, path: 'spec.address', message: 'required' },
      { name: 'bad address', yaml: `apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: w}\nspec: {address: "vm 1"}\n`, path: 'spec.address', message: 'IP address or a lowercase DNS name' },
      { name: 'port out of range', yaml: `apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: w}\nspec: {address: 10.0.0.1, ports: {http: 0}}\n`, path: 'spec.ports.http', message: 'between 1 and 65535' },
      { name: 'port name not a DNS label', yaml: `apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: w}\nspec: {address: 10.0.0.1, ports: {HTTP_PORT: 80}}\n`, path: 'spec.ports.HTTP_PORT', message: 'must be a port name' },
      { name: 'port as a string', yaml: `apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: w}\nspec: {address: 10.0.0.1, ports: {http: "8080"}}\n`, path: 'spec.ports.http', message: 'must be a port number' },
      { name: 'bad locality', yaml: `apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: w}\nspec: {address: 10.0.0.1, locality: "a//b"}\n`, path: 'spec.locality', message: 'region/zone' },
      { name: 'negative weight', yaml: `apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: w}\nspec: {address: 10.0.0.1, weight: -1}\n`, path: 'spec.weight', message: 'between 0 and 4294967295' },
      { name: 'bad label value', yaml: `apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: w}\nspec: {address: 10.0.0.1, labels: {app: "a b"}}\n`, path: 'spec.labels.app', message: 'label value' },
      { name: 'unsupported field', yaml: `apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: w}\nspec: {address: 10.0.0.1, healthCheck: {}}\n`, path: 'spec.healthCheck', message: 'unsupported field' },
      { name: 'security group', yaml: `apiVersion: security.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: w}\nspec: {address: 10.0.0.1}\n`, path: 'apiVersion', message: 'networking.istio.io/v1' },
    ],
  },
};

function errorsOf(doc: unknown): FieldError[] {
  const r = validateResource(doc);
  return r.ok ? [] : r.errors;
}

test('every registered kind has a validation table', () => {
  assert.deepEqual(Object.keys(TABLES).sort(), KINDS.map((k) => k.kind).sort());
});

for (const [kind, table] of Object.entries(TABLES)) {
  for (const c of table.good) {
    test(`${kind} accepts: ${c.name}`, () => {
      const doc: unknown = parse(c.yaml);
      const r = validateResource(doc);
      assert.ok(r.ok, `expected ${kind} "${c.name}" to validate, got ${JSON.stringify(errorsOf(doc), null, 2)}`);
      assert.equal(r.resource.kind, kind);
      // The wide columns are computed from the validated spec; they must not throw on any valid resource.
      const def = KINDS.find((k) => k.kind === kind);
      assert.ok(def);
      if (def.wide) for (const v of Object.values(def.wide(r.resource))) assert.equal(typeof v, 'string');
    });
  }
  for (const c of table.bad) {
    test(`${kind} rejects: ${c.name}`, () => {
      const r = validateResource(parse(c.yaml));
      assert.equal(r.ok, false, `expected ${kind} "${c.name}" to be rejected`);
      if (r.ok) return;
      const hit = r.errors.some((e) => e.path === c.path && e.message.includes(c.message));
      assert.ok(hit, `expected an error at "${c.path}" containing "${c.message}", got ${JSON.stringify(r.errors, null, 2)}`);
    });
  }
}

test('a document that is not a mapping is refused', () => {
  const r = validateResource(['not', 'a', 'resource']);
  assert.equal(r.ok, false);
  if (!r.ok) assert.equal(r.errors[0].path, '');
});

test('defaults are filled in for consumers', () => {
  const ap = validateResource(parse(`apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {rules: [{}]}\n`));
  assert.ok(ap.ok);
  assert.equal(ap.resource.apiVersion, 'security.istio.io/v1', 'stored under the served version');
  assert.equal(ap.resource.metadata.namespace, 'default');
  assert.equal((ap.resource.spec as { action: string }).action, 'ALLOW');

  const route = validateResource(
    parse(`apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {parentRefs: [{name: gw}], rules: [{backendRefs: [{name: web, port: 80}]}]}\n`),
  );
  assert.ok(route.ok);
  assert.deepEqual(route.resource.spec, {
    parentRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'gw' }],
    rules: [
      {
        matches: [{ path: { type: 'PathPrefix', value: '/' } }],
        backendRefs: [{ group: '', kind: 'Service', name: 'web', port: 80, weight: 1 }],
      },
    ],
  });

  const gw = validateResource(parse(`apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: waypoint}\nspec: {gatewayClassName: istio-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}\n`));
  assert.ok(gw.ok);
  assert.deepEqual((gw.resource.spec as { listeners: unknown[] }).listeners[0], {
    name: 'mesh',
    port: 15008,
    protocol: 'HBONE',
    allowedRoutes: { namespaces: { from: 'Same' } },
  });

  const dr = validateResource(parse(`apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec: {host: r, trafficPolicy: {loadBalancer: {simple: LEAST_CONN}}}\n`));
  assert.ok(dr.ok);
  assert.deepEqual(dr.resource.spec, { host: 'r', trafficPolicy: { loadBalancer: { simple: 'LEAST_REQUEST' } } });
});

test('status is accepted on input and dropped', () => {
  const r = validateResource(parse(`apiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\nstatus: {phase: Active}\n`));
  assert.ok(r.ok);
  assert.equal(r.resource.status, undefined);
});

test('kinds resolve by plural and short name', () => {
  const aliases: Record<string, string> = {
    ap: 'AuthorizationPolicy',
    authorizationpolicies: 'AuthorizationPolicy',
    pa: 'PeerAuthentication',
    peerauthentications: 'PeerAuthentication',
    ra: 'RequestAuthentication',
    requestauthentications: 'RequestAuthentication',
    gtw: 'Gateway',
    gateways: 'Gateway',
    httproutes: 'HTTPRoute',
    'httproutes.gateway.networking.k8s.io': 'HTTPRoute',
    grpcroutes: 'GRPCRoute',
    dr: 'DestinationRule',
    destinationrules: 'DestinationRule',
    vs: 'VirtualService',
    virtualservices: 'VirtualService',
    we: 'WorkloadEntry',
    workloadentries: 'WorkloadEntry',
  };
  for (const [alias, kind] of Object.entries(aliases)) assert.equal(resolveKind(alias)?.kind, kind, alias);
});

// Compiled to dist/test/unit, so the repository root is three levels up.
const EXAMPLES_DIR = path.resolve(__dirname, '..', '..', '..', 'deploy', 'examples');

test('every document in deploy/examples validates', () => {
  const files = fs.readdirSync(EXAMPLES_DIR).filter((f) => /\.ya?ml$/.test(f)).sort();
  assert.ok(files.length > 0, `no examples in ${EXAMPLES_DIR}`);
  const seen = new Set<string>();
  for (const file of files) {
    const docs = parseAllDocuments(fs.readFileSync(path.join(EXAMPLES_DIR, file), 'utf8'));
    assert.ok(Array.isArray(docs), `${file}: not a YAML stream`);
    for (const [i, doc] of docs.entries()) {
      assert.deepEqual(doc.errors, [], `${file} document ${i}: YAML errors`);
      const value: unknown = doc.toJS();
      if (value === null || value === undefined) continue;
      const r = validateResource(value);
      assert.ok(r.ok, `${file} document ${i}: ${JSON.stringify(errorsOf(value), null, 2)}`);
      seen.add(r.resource.kind);
    }
  }
  // The demo is meant to show each user-facing kind at least once.
  for (const kind of ['Namespace', 'Service', 'PeerAuthentication', 'AuthorizationPolicy', 'RequestAuthentication', 'Gateway', 'HTTPRoute', 'DestinationRule', 'VirtualService', 'WorkloadEntry']) {
    assert.ok(seen.has(kind), `deploy/examples has no ${kind}`);
  }
});

test('Ambit annotations are checked at the edge: value, kind and spelling', () => {
  const route = (ann: string) => `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: r
  namespace: demo
  annotations: {${ann}}
spec:
  parentRefs: [{group: "", kind: Service, name: web}]
  rules: [{backendRefs: [{name: web, port: 80}]}]
`;
  assert.deepEqual(errorsOf(parse(route('ambit.io/local-rate-limit: "100/s burst 20"'))), []);
  assert.deepEqual(errorsOf(parse(route('ambit.io/local-rate-limit: "600/m"'))), []);
  const bad = errorsOf(parse(route('ambit.io/local-rate-limit: "fast"')));
  assert.equal(bad[0]?.path, 'metadata.annotations.ambit.io/local-rate-limit');
  assert.match(bad[0].message, /is not "<count>\/<s\|m\|h> \[burst <n>\]"/);
  assert.match(errorsOf(parse(route('ambit.io/local-rate-limit: "0/s"')))[0].message, /must be positive/);
  assert.match(errorsOf(parse(route('ambit.io/local-ratelimit: "1/s"')))[0].message, /unknown Ambit annotation/);
  assert.match(errorsOf(parse(route('ambit.io/otlp-endpoint: "http://c:4318/v1/traces"')))[0].message, /only applies to Gateway/);
  assert.deepEqual(errorsOf(parse(route('example.com/anything: "x"'))), []);
  const gw = (ann: string) => `
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: demo, annotations: {${ann}}}
spec: {gatewayClassName: istio-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}
`;
  assert.deepEqual(errorsOf(parse(gw('ambit.io/otlp-endpoint: "http://10.244.1.7:4318/v1/traces", ambit.io/node: node2'))), []);
  assert.match(errorsOf(parse(gw('ambit.io/otlp-endpoint: "collector:4318"')))[0].message, /http or https URL|not a URL/);
  assert.match(errorsOf(parse(gw('ambit.io/node: "Node_2"')))[0].message, /not a node name/);
});

test('a waypoint Gateway for workload-addressed traffic is refused with the label named', () => {
  const gw = (v: string) => `
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: demo, labels: {istio.io/waypoint-for: ${v}}}
spec: {gatewayClassName: istio-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}
`;
  assert.deepEqual(errorsOf(parse(gw('service'))), []);
  assert.deepEqual(errorsOf(parse(gw('none'))), []);
  for (const v of ['workload', 'all']) {
    const e = errorsOf(parse(gw(v)));
    assert.equal(e[0]?.path, 'metadata.labels.istio.io/waypoint-for');
    assert.match(e[0].message, /not supported/);
  }
});

test('header values a proxy would send are refused when they hold control characters', () => {
  const route = (value: string) => ({
    apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'r', namespace: 'demo' },
    spec: { parentRefs: [{ group: '', kind: 'Service', name: 'web' }], rules: [{ filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-a', value }] } }], backendRefs: [{ name: 'web', port: 80 }] }] },
  });
  assert.deepEqual(errorsOf(route('plain value\twith tab')), []);
  const e = errorsOf(route('a\r\nx-injected: 1'));
  assert.equal(e[0]?.path, 'spec.rules[0].filters[0].requestHeaderModifier.set[0].value');
  assert.match(e[0].message, /control characters/);
  const vs = (value: string) => ({
    apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'v', namespace: 'demo' },
    spec: { hosts: ['web'], http: [{ headers: { request: { set: { 'x-a': value } } }, route: [{ destination: { host: 'web' } }] }] },
  });
  assert.deepEqual(errorsOf(vs('ok')), []);
  assert.match(errorsOf(vs('bad\u0000'))[0].message, /control characters/);
  // Written as single bytes, U+010A would become LF on the wire.
  assert.match(errorsOf(vs('a\u010Ax-injected: 1'))[0].message, /beyond U\+00FF/);
  assert.deepEqual(errorsOf(vs('caf\u00e9')), [], 'Latin-1 (obs-text) is allowed');
});

test('a malformed duration is a field error wherever a duration is refined further, never a thrown validation', () => {
  const cases: Array<{ doc: object; path: string }> = [
    { doc: { apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'v', namespace: 'd' }, spec: { hosts: ['web'], http: [{ route: [{ destination: { host: 'web' } }], retries: { attempts: 2, perTryTimeout: '2x' } }] } }, path: 'spec.http[0].retries.perTryTimeout' },
    { doc: { apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'v', namespace: 'd' }, spec: { hosts: ['web'], http: [{ route: [{ destination: { host: 'web' } }], timeout: 'soon' }] } }, path: 'spec.http[0].timeout' },
    { doc: { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'r', namespace: 'd' }, spec: { rules: [{ timeouts: { request: '1x', backendRequest: '1s' } }] } }, path: 'spec.rules[0].timeouts.request' },
    { doc: { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'r', namespace: 'd' }, spec: { rules: [{ timeouts: { request: '10s', backendRequest: 'x' } }] } }, path: 'spec.rules[0].timeouts.backendRequest' },
    { doc: { apiVersion: 'security.istio.io/v1', kind: 'RequestAuthentication', metadata: { name: 'j', namespace: 'd' }, spec: { jwtRules: [{ issuer: 'https://i', jwksUri: 'https://i/jwks', timeout: '5 seconds' }] } }, path: 'spec.jwtRules[0].timeout' },
  ];
  for (const c of cases) {
    const r = validateResource(c.doc);
    assert.equal(r.ok, false, c.path);
    if (r.ok) continue;
    assert.ok(r.errors.some((e) => e.path === c.path && /duration/.test(e.message)), `${c.path}: ${JSON.stringify(r.errors)}`);
    assert.ok(!r.errors.some((e) => e.path === c.path && /at least|greater than|longer than/.test(e.message)), `${c.path}: only the format error: ${JSON.stringify(r.errors)}`);
  }
});
