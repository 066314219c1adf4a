/**
 * http(s):// and dav(s):// built in: GET straight off the socket into a file (http-get.ts), PUT
 * from a file with Node's client, adler32 computed on the bytes as they pass, MKCOL for missing
 * parent collections, HEAD (or PROPFIND) for the size. For https the grid proxy can be the client
 * certificate.
 */
import fs from 'node:fs';
import http, { type ClientRequest, type IncomingMessage } from 'node:http';
import https from 'node:https';
import { redactUrl } from '../../../server/redact.js';
import { ChecksummedFileReader } from '../adler32.js';
import { getToFile } from './http-get.js';
import { TransferError, type TlsMaterial, type Transfer, type Transferred } from './types.js';

export type { TlsMaterial } from './types.js';

const UPLOAD_CHUNK = 1 << 20;
const MAX_REDIRECTS = 5;
const REDIRECTS = [301, 302, 303, 307, 308];

/** `credentials` gives the Authorization header (macaroon, bearer token) for a URL, read afresh per request. */
export function httpTransfer(tls: () => TlsMaterial = () => ({}), credentials: (url: string) => Record<string, string> = () => ({})): Transfer {
  const send = (method: string, url: URL, signal: AbortSignal, headers: Record<string, string | number> = {}, body?: (req: ClientRequest) => Promise<unknown>) =>
    request(method, url, signal, { ...credentials(url.href), ...headers }, body, url.protocol === 'https:' ? tls() : undefined);

  return {
    async download(url, dest, { signal }) {
      let target = webUrl(url);
      for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
        const tlsMaterial = target.protocol === 'https:' ? tls() : undefined;
        const { head, body } = await getToFile(target, dest, { signal, headers: { ...credentials(target.href), ...authHeader(target) }, tls: tlsMaterial, shownUrl: url });
        const location = head.headers.get('location');
        if (REDIRECTS.includes(head.status) && location) {
          target = new URL(location, target);
          if (target.protocol !== 'http:' && target.protocol !== 'https:') throw new TransferError(url, `redirected to ${redactUrl(target.href)}, not http(s)`, false);
          continue;
        }
        if (!body) throw statusError(url, head.status, head.statusText);
        return body;
      }
      throw new TransferError(url, `more than ${MAX_REDIRECTS} redirects`, false);
    },

    async upload(src, url, { signal }) {
      let target = webUrl(url);
      const size = fs.statSync(src).size;
      const put = async (to: URL): Promise<{ res: IncomingMessage; sent: Promise<ChecksummedFileReader> }> => {
        let sent: Promise<ChecksummedFileReader> | undefined;
        const headers = { 'Content-Length': size, 'Content-Type': 'application/octet-stream' };
        const res = await send('PUT', to, signal, headers, (req) => (sent = sendFile(src, req)));
        return { res, sent: sent! };
      };
      let attempt = await put(target);
      for (let hop = 0; hop < MAX_REDIRECTS; hop++) {
        const location = redirectTarget(attempt.res, target);
        if (location) {
          // dCache's doors redirect a PUT to the pool that will store the file.
          target = location;
          attempt = await put(target);
        } else if (attempt.res.statusCode === 409 && hop === 0) {
          // 409 Conflict on PUT: a parent collection is missing (servers without auto-create).
          attempt.res.resume();
          await makeParents(target, (m, u) => send(m, u, signal));
          attempt = await put(target);
        } else break;
      }
      const { res } = attempt;
      if (res.statusCode !== 200 && res.statusCode !== 201 && res.statusCode !== 204) throw responseError(url, res);
      res.resume();
      const sum = await attempt.sent;
      if (sum.size !== size) throw new TransferError(url, `sent ${sum.size} of ${size} bytes`, true);
      return { size: sum.size, adler32: sum.hex } satisfies Transferred;
    },

    async stat(url, { signal }) {
      const target = webUrl(url);
      const head = await send('HEAD', target, signal);
      head.resume();
      if (head.statusCode === 404 || head.statusCode === 410) return null;
      if (head.statusCode === 200 && head.headers['content-length'] !== undefined) return { size: Number(head.headers['content-length']) };
      if (head.statusCode !== 405 && head.statusCode !== 501 && head.statusCode !== 200) throw responseError(url, head);
      // Some WebDAV servers answer HEAD without a length (or not at all): ask PROPFIND.
      const res = await send('PROPFIND', target, signal, { Depth: 0, 'Content-Type': 'application/xml' });
      const body = await readBody(res);
      if (res.statusCode === 404) return null;
      if (res.statusCode !== 207) throw responseError(url, res);
      const m = /<(?:[\w-]+:)?getcontentlength[^>]*>\s*(\d+)\s*</i.exec(body);
      if (!m) throw new TransferError(url, 'PROPFIND answer gives no size', false);
      return { size: Number(m[1]) };
    },

    async rename(from, to, { signal, replace }) {
      const target = webUrl(to);
      target.username = '';
      target.password = '';
      // WebDAV MOVE: Overwrite F makes the server refuse (412) instead of replacing, in one step.
      const res = await send('MOVE', webUrl(from), signal, { Destination: target.href, Overwrite: replace ? 'T' : 'F' });
      res.resume();
      if (res.statusCode === 412) return false;
      if (res.statusCode !== 201 && res.statusCode !== 204) throw responseError(from, res);
      return true;
    },

    async remove(url, { signal }) {
      const res = await send('DELETE', webUrl(url), signal);
      res.resume();
      if (res.statusCode === 404 || res.statusCode === 410) return;
      if (res.statusCode! < 200 || res.statusCode! >= 300) throw responseError(url, res);
    },

    async checksum(url, { signal }) {
      // RFC 3230 (dCache, StoRM, EOS answer it); servers that do not (nginx) send no Digest.
      const res = await send('HEAD', webUrl(url), signal, { 'Want-Digest': 'adler32' });
      res.resume();
      const m = /(?:^|,)\s*adler32=([0-9a-f]{1,8})\s*(?:,|$)/i.exec(String(res.headers.digest ?? ''));
      return res.statusCode === 200 && m ? m[1]!.toLowerCase().padStart(8, '0') : null;
    },
  };
}

/** dav:// and davs:// are http and https with WebDAV methods (gfal's naming). */
export function webUrl(url: string): URL {
  // WHATWG URLs cannot switch a custom scheme to a special one in place: rewrite the text.
  return new URL(url.replace(/^dav(s?):/i, 'http$1:'));
}

function request(
  method: string,
  url: URL,
  signal: AbortSignal,
  headers: Record<string, string | number>,
  body: ((req: ClientRequest) => Promise<unknown>) | undefined,
  tls: TlsMaterial | undefined,
): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const options = { method, headers: { ...headers, ...authHeader(url) }, signal, ...(tls ?? {}) };
    const target = new URL(url);
    target.username = '';
    target.password = '';
    const req = (url.protocol === 'https:' ? https : http).request(target, options);
    let answered = false;
    req.on('response', (res) => {
      answered = true;
      resolve(res);
    });
    req.on('error', reject);
    if (!body) {
      req.end();
      return;
    }
    body(req).catch((err: unknown) => {
      // A server may answer (e.g. 409) before reading the body; the answer is what counts.
      if (!answered) reject(err);
    });
  });
}

/** Basic auth from the URL's user info (never sent in the request line). */
function authHeader(url: URL): Record<string, string> {
  if (!url.username) return {};
  return { Authorization: 'Basic ' + Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64') };
}

function redirectTarget(res: IncomingMessage, from: URL): URL | null {
  if (!REDIRECTS.includes(res.statusCode ?? 0) || !res.headers.location) return null;
  res.resume();
  return new URL(res.headers.location, from);
}

function responseError(url: string, res: IncomingMessage): TransferError {
  res.resume();
  return statusError(url, res.statusCode ?? 0, res.statusMessage);
}

function statusError(url: string, code: number, message: string | undefined): TransferError {
  const text = `${code} ${message || http.STATUS_CODES[code] || ''}`.trim();
  if (code === 401 || code === 403) return new TransferError(url, `${text} (check the grid proxy or credentials)`, false);
  const retryable = code >= 500 || code === 408 || code === 429;
  return new TransferError(url, text, retryable);
}

async function makeParents(target: URL, send: (method: string, url: URL) => Promise<IncomingMessage>): Promise<void> {
  const parts = target.pathname.split('/').filter(Boolean).slice(0, -1);
  for (let i = 1; i <= parts.length; i++) {
    const dir = new URL(target);
    dir.pathname = '/' + parts.slice(0, i).join('/') + '/';
    const res = await send('MKCOL', dir);
    res.resume();
    // 201 created, 405 exists; anything else will show in the PUT that follows.
  }
}

/**
 * The PUT body: the file in 1 MiB chunks through two buffers that take turns (one being read
 * and checksummed while the socket takes the other), so there is no allocation or copy per
 * chunk and the socket's pace is the backpressure. Resolves with the reader (size, adler32)
 * once every byte is handed to the socket.
 */
async function sendFile(src: string, req: ClientRequest): Promise<ChecksummedFileReader> {
  // A local read error must end the request: the server would wait for the rest of the body.
  const local = (err: unknown): never => {
    req.destroy(err as Error);
    throw err;
  };
  const reader = await ChecksummedFileReader.open(src, UPLOAD_CHUNK, 2).catch(local);
  const failed = new Promise<never>((_, reject) => {
    req.once('error', reject);
    req.once('close', () => reject(new Error('connection closed while sending')));
  });
  failed.catch(() => {});
  const read = () => reader.next().catch(local);
  try {
    let written: Promise<void> = Promise.resolve();
    for (let chunk = await read(); chunk; chunk = await read()) {
      // The buffer being read into now was written two turns ago: that write must be done.
      await Promise.race([written, failed]);
      const out = chunk;
      written = new Promise((resolve, reject) => req.write(out, (err) => (err ? reject(err) : resolve())));
      // When the connection fails first, `failed` carries the error; this one may come later.
      written.catch(() => {});
    }
    await Promise.race([written, failed]);
    req.end();
    return reader;
  } finally {
    await reader.close();
  }
}

async function readBody(res: IncomingMessage): Promise<string> {
  let text = '';
  for await (const chunk of res) text += chunk.toString();
  return text;
}
