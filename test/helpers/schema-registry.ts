import http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * NOT a real schema registry: a small HTTP server that answers the Confluent Schema Registry REST API calls this
 * project makes, with the response bodies and error codes its documentation gives (docs.confluent.io, "Schema
 * Registry API Reference": POST /subjects/{s}/versions -> {"id"}, GET /schemas/ids/{id} -> {"schema",
 * "schemaType"}, GET /subjects/{s}/versions/latest, GET|PUT /config/{s}; errors {"error_code": 40401 | 40403,
 * "message"} with status 404). A real registry could not be started on this machine (README, "The original jobs":
 * Apicurio's runnable build and Confluent's server are not on Maven Central), so the client is tested against this.
 * It counts requests, so tests can see that schemas are fetched once and cached.
 */
export interface RegistryStub {
  url: string;
  requests: string[];
  /** Registers a schema directly (as another producer would), returning its id. */
  add(subject: string, schema: object): number;
  close(): Promise<void>;
}

interface Version { id: number; version: number; schema: string }

export async function startRegistryStub(): Promise<RegistryStub> {
  const schemas = new Map<number, string>();
  const subjects = new Map<string, Version[]>();
  const configs = new Map<string, string>();
  const requests: string[] = [];
  const add = (subject: string, schema: string): number => {
    const versions = subjects.get(subject) ?? [];
    const same = versions.find((v) => v.schema === schema);
    if (same) return same.id;
    const existing = [...schemas].find(([, s]) => s === schema)?.[0];
    const id = existing ?? schemas.size + 1;
    schemas.set(id, schema);
    versions.push({ id, version: versions.length + 1, schema });
    subjects.set(subject, versions);
    return id;
  };
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => { body += d.toString(); });
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://stub');
      requests.push(`${req.method} ${url.pathname}`);
      const send = (status: number, data: object) => {
        res.writeHead(status, { 'content-type': 'application/vnd.schemaregistry.v1+json' });
        res.end(JSON.stringify(data));
      };
      const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
      if (parts[0] === 'config' && parts.length === 2) {
        if (req.method === 'PUT') {
          const { compatibility } = JSON.parse(body) as { compatibility: string };
          configs.set(parts[1], compatibility);
          return send(200, { compatibility });
        }
        const c = configs.get(parts[1]);
        return c ? send(200, { compatibilityLevel: c }) : send(404, { error_code: 40401, message: `Subject '${parts[1]}' not found.` });
      }
      if (parts[0] === 'subjects' && parts[2] === 'versions') {
        const subject = parts[1];
        if (req.method === 'POST' && parts.length === 3) {
          const { schema, schemaType } = JSON.parse(body) as { schema: string; schemaType?: string };
          if (schemaType !== 'JSON') return send(422, { error_code: 42201, message: 'Invalid schema: only JSON is served here' });
          return send(200, { id: add(subject, schema) });
        }
        const versions = subjects.get(subject);
        if (!versions?.length) return send(404, { error_code: 40401, message: `Subject '${subject}' not found.` });
        const v = parts[3] === 'latest' ? versions[versions.length - 1] : versions.find((x) => x.version === Number(parts[3]));
        if (!v) return send(404, { error_code: 40402, message: 'Version not found.' });
        return send(200, { subject, version: v.version, id: v.id, schemaType: 'JSON', schema: v.schema });
      }
      if (parts[0] === 'schemas' && parts[1] === 'ids' && parts.length === 3) {
        const s = schemas.get(Number(parts[2]));
        return s ? send(200, { schemaType: 'JSON', schema: s }) : send(404, { error_code: 40403, message: 'Schema not found' });
      }
      send(404, { error_code: 404, message: 'HTTP 404 Not Found' });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    add: (subject, schema) => add(subject, JSON.stringify(schema)),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
