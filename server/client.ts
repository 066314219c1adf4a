/**
 * How every part of tokenpool reaches a pool: nano over CouchDB's HTTP API, the same against the
 * embedded server and an Apache CouchDB 3 cluster. Credentials come from a 0600 file, environment
 * variables or (discouraged) the URL; they travel in an Authorization header, never in a URL we print.
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import type Nano from 'nano';
import type { DocumentScope, ServerScope } from 'nano';
import { DEFAULT_DB_TIMEOUT_S, deadlineDispatcher } from './deadline.js';
import { InputError } from './errors.js';
import { redactUrl, registerSecret } from './redact.js';
import type { Token } from './token.js';

// nano is CommonJS. Imported, Node's ESM loader first scans its 33 kB for export names, and compiling
// that scanner with V8's optimizing compiler costs a short-lived agent ~10 MB of peak memory;
// require() loads it without the scan. (jdl/bundle.mjs bundles this call as a plain require.)
const nano = createRequire(import.meta.url)('nano') as typeof Nano;

export interface PoolOptions {
  /** Database URL, e.g. http://127.0.0.1:5984/lofar (the last path segment is the database). */
  db?: string;
  /** A 0600 JSON file: {"name": ..., "password": ...} and optionally "url". */
  credentials?: string;
  user?: string;
  password?: string;
  /** Seconds a request may go without an answer before the server is asked whether it is alive (server/deadline.ts). */
  dbTimeoutS?: number;
}

export interface Credentials {
  name: string;
  password: string;
}

export interface Pool {
  server: ServerScope;
  db: DocumentScope<Token>;
  dbName: string;
  /** Server URL without credentials */
  serverUrl: string;
  /** Database URL without credentials, safe to print */
  displayUrl: string;
  credentials: Credentials | null;
  /** Value of the Authorization header, for raw HTTP (changes feeds, streaming) */
  authorization: string | null;
  /** Milliseconds of silence after which a request's server is asked whether it is alive */
  quietMs: number;
}

export interface CredentialsFile {
  name: string;
  password: string;
  url?: string;
}

export function readCredentialsFile(file: string): CredentialsFile {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch {
    throw new InputError(`credentials file not found: ${file}`, 'Pass --credentials FILE (or TOKENPOOL_CREDENTIALS) naming a JSON file {"name": ..., "password": ...}.');
  }
  if ((stat.mode & 0o077) !== 0) {
    throw new InputError(
      `credentials file ${file} is readable by others (mode ${(stat.mode & 0o777).toString(8)})`,
      `Run: chmod 600 ${file}`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new InputError(`credentials file ${file} is not valid JSON: ${(err as Error).message}`);
  }
  const c = parsed as Partial<CredentialsFile>;
  if (typeof c.name !== 'string' || typeof c.password !== 'string') {
    throw new InputError(`credentials file ${file} must hold "name" and "password" strings`);
  }
  registerSecret(c.password);
  return { name: c.name, password: c.password, url: typeof c.url === 'string' ? c.url : undefined };
}

export function basicAuth(c: Credentials): string {
  return 'Basic ' + Buffer.from(`${c.name}:${c.password}`).toString('base64');
}

/** Splits a database URL into server URL, database name and any embedded credentials. */
export function parseDbUrl(dbUrl: string): { serverUrl: string; dbName: string; credentials: Credentials | null } {
  let u: URL;
  try {
    u = new URL(dbUrl);
  } catch {
    throw new InputError(`not a database URL: ${redactUrl(dbUrl)}`, 'Give --db as http(s)://host:port/dbname.');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new InputError(`database URL must be http or https: ${redactUrl(dbUrl)}`);
  }
  const parts = u.pathname.split('/').filter(Boolean);
  const dbName = parts.pop();
  if (!dbName) {
    throw new InputError(`database URL names no database: ${redactUrl(dbUrl)}`, 'Append the database name, e.g. http://127.0.0.1:5984/lofar');
  }
  const credentials = u.username ? { name: decodeURIComponent(u.username), password: decodeURIComponent(u.password) } : null;
  registerSecret(credentials?.password);
  u.username = '';
  u.password = '';
  u.pathname = parts.length ? `/${parts.join('/')}/` : '/';
  return { serverUrl: u.toString().replace(/\/$/, ''), dbName: decodeURIComponent(dbName), credentials };
}

export function openPool(opts: PoolOptions): Pool {
  const file = opts.credentials ? readCredentialsFile(opts.credentials) : null;
  const dbUrl = opts.db ?? file?.url;
  if (!dbUrl) {
    throw new InputError('no database given', 'Pass --db http://host:port/dbname or set TOKENPOOL_DB.');
  }
  const parsed = parseDbUrl(dbUrl);
  registerSecret(opts.password);
  const credentials: Credentials | null =
    file ?? (opts.user && opts.password !== undefined ? { name: opts.user, password: opts.password } : parsed.credentials);
  const authorization = credentials ? basicAuth(credentials) : null;
  const quietMs = (opts.dbTimeoutS ?? DEFAULT_DB_TIMEOUT_S) * 1000;
  const server = nano({
    url: parsed.serverUrl,
    headers: authorization ? { Authorization: authorization } : {},
    agentOptions: deadlineDispatcher(quietMs) as Nano.Configuration['agentOptions'],
  });
  return {
    server,
    db: server.use<Token>(parsed.dbName),
    dbName: parsed.dbName,
    serverUrl: parsed.serverUrl,
    displayUrl: `${parsed.serverUrl}/${encodeURIComponent(parsed.dbName)}`,
    credentials,
    authorization,
    quietMs,
  };
}
