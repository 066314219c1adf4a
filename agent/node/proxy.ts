/**
 * The grid proxy (RFC 3820) on this node: where it is, whom it names, how long it lives. The file
 * holds the proxy certificate first, its private key, then the user's chain. Nothing here ever
 * prints or copies the file's contents; only its path, subject and expiry.
 */
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import { TokenpoolError } from '../../server/errors.js';
import { EXIT } from '../../server/token.js';

/** A proxy problem: the agent refuses to claim work; exit code EXIT.credentials. */
export class ProxyError extends TokenpoolError {
  constructor(message: string, hint?: string) {
    super(message, hint, EXIT.credentials);
  }
}

export interface ProxyInfo {
  path: string;
  /** Grid form: /DC=org/DC=terena/CN=Jane Doe/CN=1234 */
  subject: string;
  issuer: string;
  notAfter: Date;
  secondsLeft: number;
}

const HINT = 'Create one with voms-proxy-init --voms lofar:/lofar/user --valid 168:00, or point X509_USER_PROXY at it.';

export function proxyPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.X509_USER_PROXY || `/tmp/x509up_u${os.userInfo().uid}`;
}

/** `DC=org\nCN=Jane` (Node's form) → `/DC=org/CN=Jane` (the grid's form). */
export function gridDn(nodeDn: string): string {
  return nodeDn
    .split('\n')
    .filter(Boolean)
    .map((part) => `/${part}`)
    .join('');
}

/** Reads and parses the proxy; throws a ProxyError when it is missing, unreadable, open to others or not a certificate. */
export function readProxy(file: string, now = Date.now()): ProxyInfo {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch {
    throw new ProxyError(`no grid proxy at ${file}`, HINT);
  }
  if ((stat.mode & 0o077) !== 0) {
    throw new ProxyError(`grid proxy ${file} is readable by others (mode ${(stat.mode & 0o777).toString(8)}); grid services reject it`, `Run: chmod 600 ${file}`);
  }
  let pem: string;
  try {
    pem = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ProxyError(`grid proxy ${file} is not readable: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, HINT);
  }
  const first = pemBlocks(pem, 'CERTIFICATE')[0];
  if (!first) throw new ProxyError(`grid proxy ${file} holds no certificate`, HINT);
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(first);
  } catch (err) {
    throw new ProxyError(`grid proxy ${file} is not a valid certificate: ${(err as Error).message}`, HINT);
  }
  // Node 20 has no validToDate; validTo reads like "Jan  1 00:00:00 2030 GMT", which Date parses.
  const notAfter = new Date(cert.validTo);
  if (Number.isNaN(notAfter.getTime())) throw new ProxyError(`grid proxy ${file}: cannot read its expiry "${cert.validTo}"`);
  return {
    path: file,
    subject: gridDn(cert.subject),
    issuer: gridDn(cert.issuer),
    notAfter,
    secondsLeft: Math.floor((notAfter.getTime() - now) / 1000),
  };
}

/** The proxy, checked to live at least `minSeconds` more; throws a ProxyError saying what is wrong. */
export function checkProxy(file: string, minSeconds: number, now = Date.now()): ProxyInfo {
  const info = readProxy(file, now);
  if (info.secondsLeft <= 0) {
    throw new ProxyError(`grid proxy ${file} (${info.subject}) expired at ${info.notAfter.toISOString()}`, HINT);
  }
  if (info.secondsLeft < minSeconds) {
    throw new ProxyError(
      `grid proxy ${file} (${info.subject}) has ${formatSeconds(info.secondsLeft)} left, less than the ${formatSeconds(minSeconds)} required`,
      `${HINT} Or lower --min-proxy-lifetime.`,
    );
  }
  return info;
}

/** Certificate chain and key to present as an https client certificate. */
export function proxyTlsCredentials(file: string): { cert: string; key: string } {
  const pem = fs.readFileSync(file, 'utf8');
  const key = pemBlocks(pem, 'RSA PRIVATE KEY')[0] ?? pemBlocks(pem, 'PRIVATE KEY')[0] ?? pemBlocks(pem, 'EC PRIVATE KEY')[0];
  if (!key) throw new ProxyError(`grid proxy ${file} holds no private key`, HINT);
  return { cert: pemBlocks(pem, 'CERTIFICATE').join('\n'), key };
}

function pemBlocks(pem: string, label: string): string[] {
  const re = new RegExp(`-----BEGIN ${label}-----[\\s\\S]*?-----END ${label}-----`, 'g');
  return pem.match(re) ?? [];
}

export function formatSeconds(s: number): string {
  if (s >= 86400) return `${(s / 86400).toFixed(1)} d`;
  if (s >= 3600) return `${(s / 3600).toFixed(1)} h`;
  if (s >= 60) return `${Math.floor(s / 60)} min`;
  return `${s} s`;
}
