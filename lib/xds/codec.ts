import path from 'node:path';
import protobuf from 'protobufjs';
import { TYPE_AUTHORIZATION, TYPE_SERVICE, TYPE_WORKLOAD, TYPE_WAYPOINT_SERVICE } from '../api/workload-types';

export const PROTO_DIR = path.join(__dirname, '..', 'api', 'proto');

const root = protobuf.loadSync(path.join(PROTO_DIR, 'workload.proto'));
const types: Record<string, protobuf.Type> = {
  [TYPE_WORKLOAD]: root.lookupType(TYPE_WORKLOAD),
  [TYPE_SERVICE]: root.lookupType(TYPE_SERVICE),
  [TYPE_AUTHORIZATION]: root.lookupType(TYPE_AUTHORIZATION),
};

export function encodeBody(type: string, value: object): Uint8Array {
  if (type === TYPE_WAYPOINT_SERVICE) return Buffer.from(JSON.stringify(value));
  const t = types[type];
  if (!t) throw new Error(`unknown resource type ${type}`);
  const err = t.verify(value);
  if (err) throw new Error(`${type}: ${err}`);
  return t.encode(t.fromObject(value)).finish();
}

export function decodeBody<T>(type: string, body: Uint8Array): T {
  if (type === TYPE_WAYPOINT_SERVICE) return JSON.parse(Buffer.from(body).toString('utf8')) as T;
  const t = types[type];
  if (!t) throw new Error(`unknown resource type ${type}`);
  return t.toObject(t.decode(body), { defaults: true, arrays: true, objects: true, oneofs: false, enums: Number }) as T;
}
