import { fileURLToPath } from 'node:url';
import path from 'node:path';

/** Everything the embedded default keeps lives under `.local/` of the project (ignored by git). */
/** This process runs the compiled build (dist/, `npm run build`), not the TypeScript sources. */
export const compiled = import.meta.url.endsWith('.js');
// From pipeline/local/, or from dist/pipeline/local/ when compiled.
const up = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const projectRoot = compiled && path.basename(up) === 'dist' ? path.dirname(up) : up;
export const localRoot = process.env.PIPELINE_LOCAL_DIR ?? path.join(projectRoot, '.local');

export const KAFKA_VERSION = '4.1.1';
export const LOCAL_KAFKA_PORT = Number(process.env.LOCAL_KAFKA_PORT ?? 19092);
export const LOCAL_KAFKA_CONTROLLER_PORT = LOCAL_KAFKA_PORT + 1;
export const LOCAL_KAFKA_CLUSTER_PORT = Number(process.env.LOCAL_KAFKA_CLUSTER_PORT ?? 19192);
export const LOCAL_KAFKA_SECURE_PORT = Number(process.env.LOCAL_KAFKA_SECURE_PORT ?? 19392);
export const LOCAL_KAFKA_SECURE_CLUSTER_PORT = Number(process.env.LOCAL_KAFKA_SECURE_CLUSTER_PORT ?? 19492);
export const LOCAL_POSTGRES_SECURE_PORT = Number(process.env.LOCAL_POSTGRES_SECURE_PORT ?? 15532);
export const LOCAL_POSTGRES_PORT = Number(process.env.LOCAL_POSTGRES_PORT ?? 15432);
export const LOCAL_POSTGRES_PASSWORD = 'pipeline';

export const localKafkaBrokers = () => `127.0.0.1:${LOCAL_KAFKA_PORT}`;
export const localDatabaseUrl = () =>
  `postgres://postgres:${LOCAL_POSTGRES_PASSWORD}@127.0.0.1:${LOCAL_POSTGRES_PORT}/postgres`;
