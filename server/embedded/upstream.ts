/** Small HTTP calls from the front to the engine child (sessions, changes, view indexes). */
import http from 'node:http';

export interface UpstreamReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface Upstream {
  port(): Promise<number>;
  agent: http.Agent;
}

/** Sends one request and buffers the whole reply (only for replies of bounded size). */
export async function callEngine(
  up: Upstream,
  method: string,
  path: string,
  headers: http.OutgoingHttpHeaders,
  body?: string | Buffer,
): Promise<UpstreamReply> {
  const port = await up.port();
  return new Promise((resolve, reject) => {
    const h: http.OutgoingHttpHeaders = { accept: 'application/json', ...headers, 'accept-encoding': 'identity' };
    if (body !== undefined) {
      h['content-type'] ??= 'application/json';
      h['content-length'] = Buffer.byteLength(body);
    } else delete h['content-length'];
    const req = http.request({ host: '127.0.0.1', port, method, path, headers: h, agent: up.agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 502, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Only the headers that carry who the caller is: reused for requests made on the caller's behalf. */
export function identityHeaders(headers: http.IncomingHttpHeaders): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = {};
  if (headers.authorization) out.authorization = headers.authorization;
  if (headers.cookie) out.cookie = headers.cookie;
  return out;
}
