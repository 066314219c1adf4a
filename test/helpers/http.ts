/** Raw HTTP for the embedded-server tests: exact methods, paths and headers, as a client could send them. */
import http from 'node:http';
import { basicAuth, type Credentials } from '../../server/client.js';

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  json(): any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

export function rawRequest(
  baseUrl: string,
  method: string,
  path: string,
  opts: { auth?: Credentials; headers?: http.OutgoingHttpHeaders; body?: string | Buffer; timeoutMs?: number } = {},
): Promise<Reply> {
  const u = new URL(baseUrl);
  const headers: http.OutgoingHttpHeaders = { ...opts.headers };
  if (opts.auth) headers.authorization = basicAuth(opts.auth);
  if (opts.body !== undefined) {
    headers['content-length'] = Buffer.byteLength(opts.body);
    headers['content-type'] ??= 'application/json';
  }
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, method, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json: () => JSON.parse(body) });
      });
      res.on('error', reject);
    });
    req.setTimeout(opts.timeoutMs ?? 60_000, () => req.destroy(new Error(`${method} ${path}: no answer in time`)));
    req.on('error', reject);
    req.end(opts.body);
  });
}
