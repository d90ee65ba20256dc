import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { localRegistryUrl, startRegistry as startEmbeddedRegistry } from '../../pipeline/local/registry.ts';

let upstream: Promise<string> | undefined;

/**
 * The real schema registry the tests use: SCHEMA_REGISTRY_URL when set, else the embedded Apicurio Registry (the
 * Confluent API at /apis/ccompat/v7), started on first use and left running for later tests, like Kafka.
 */
export function realRegistry(): Promise<string> {
  upstream ??= (async () => {
    const url = process.env.TEST_SCHEMA_REGISTRY_URL?.replace(/\/+$/, '');
    if (url) return url;
    await startEmbeddedRegistry((line) => process.stderr.write(`setup: ${line}\n`));
    return localRegistryUrl();
  })();
  return upstream;
}

/**
 * The real registry behind a recording proxy of the tests' own: every request the pipeline makes passes through
 * it to the registry unchanged, and its method and path (`GET /schemas/ids/3`) are kept, so a test can see what
 * was fetched and how often. Ids are the registry's own: Apicurio's are content ids, shared across subjects.
 */
export interface Registry {
  url: string;
  requests: string[];
  /** Registers a schema straight at the registry (as another producer would, not through the proxy): its id. */
  register(subject: string, schema: object): Promise<number>;
  /** PUT /config/{subject}: the compatibility level the registry enforces for the subject. */
  setCompatibility(subject: string, level: 'BACKWARD' | 'FORWARD' | 'FULL' | 'NONE'): Promise<void>;
  close(): Promise<void>;
}

const TYPE = 'application/vnd.schemaregistry.v1+json';

async function call(base: string, method: string, path: string, body?: object): Promise<unknown> {
  const res = await fetch(`${base}${path}`, { method, headers: { 'content-type': TYPE }, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await res.json() as { error_code?: number; message?: string };
  if (!res.ok) throw new Error(`${method} ${path}: HTTP ${res.status} ${data.error_code}: ${data.message}`);
  return data;
}

export async function startRegistry(): Promise<Registry> {
  const base = await realRegistry();
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('end', () => {
      requests.push(`${req.method} ${new URL(req.url ?? '/', 'http://proxy').pathname}`);
      const headers: Record<string, string> = {};
      for (const h of ['content-type', 'accept', 'authorization']) if (typeof req.headers[h] === 'string') headers[h] = req.headers[h];
      fetch(`${base}${req.url}`, { method: req.method, headers, body: chunks.length ? Buffer.concat(chunks) : undefined })
        .then(async (up) => {
          res.writeHead(up.status, { 'content-type': up.headers.get('content-type') ?? TYPE });
          res.end(Buffer.from(await up.arrayBuffer()));
        })
        .catch((err: Error) => {
          res.writeHead(502, { 'content-type': 'text/plain' });
          res.end(`the test proxy could not reach the registry: ${err.message}`);
        });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    register: async (subject, schema) =>
      ((await call(base, 'POST', `/subjects/${encodeURIComponent(subject)}/versions`, { schema: JSON.stringify(schema), schemaType: 'JSON' })) as { id: number }).id,
    setCompatibility: async (subject, level) => { await call(base, 'PUT', `/config/${encodeURIComponent(subject)}`, { compatibility: level }); },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
