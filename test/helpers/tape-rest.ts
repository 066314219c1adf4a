/**
 * A stand-in for a storage element's WLCG Tape REST API (v1) on loopback, so that the REAL
 * gfal-bringonline (gfal2's http plugin) can stage against it. It answers the calls gfal2 2.21
 * makes for a bring-online, as observed on the wire:
 *   GET  /.well-known/wlcg-tape-rest-api  -> {sitename, endpoints: [{uri, version: "v1", metadata}]}
 *   POST <uri>/stage/   {"files":[{"path"}]} -> 201 {"requestId"} + Location
 *   GET  <uri>/stage/<id>                    -> {id, createdAt, startedAt, files: [{path, onDisk, state, error?}]}
 * Files live on tape until the test brings them online or makes them fail; the state is per path
 * (as on a real storage), so every stage request sees it. Plain http is enough: gfal2 follows
 * the URL's scheme for the discovery and the endpoint.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** A request the stand-in received (what `count` looks through) */
interface TapeRestCall {
  method: string;
  path: string;
  body: string;
}

export interface StageRequestRecord {
  id: string;
  paths: string[];
  createdAt: number;
}

export interface TapeRestStandIn {
  /** `http://127.0.0.1:<port>`: a file's URL is this plus its path */
  base: string;
  /** Stage requests by id */
  stageRequests: Map<string, StageRequestRecord>;
  /** The files now sit on disk */
  setOnline(...paths: string[]): void;
  /** The storage gives up on the file with this message */
  setFailed(path: string, message: string): void;
  /** Answer every stage and poll call with this HTTP status (an outage); null ends it */
  setOutage(status: number | null): void;
  /** How many calls matched method and a path prefix */
  count(method: string, pathPrefix: string): number;
  close(): Promise<void>;
}

/** Where the stand-in's discovery points gfal2 */
export const TAPE_API = '/api/v1/tape';

export async function startTapeRest(): Promise<TapeRestStandIn> {
  const calls: TapeRestCall[] = [];
  const stageRequests = new Map<string, StageRequestRecord>();
  const online = new Set<string>();
  const failed = new Map<string, string>();
  let outage: number | null = null;
  let nextId = 1;

  const fileState = (path: string) => {
    const error = failed.get(path);
    if (error !== undefined) return { path, onDisk: false, state: 'FAILED', error };
    return online.has(path) ? { path, onDisk: true, state: 'COMPLETED' } : { path, onDisk: false, state: 'STARTED' };
  };

  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      calls.push({ method: req.method ?? '', path: url.pathname, body });
      const base = `http://${req.headers.host}`;
      const send = (status: number, json: unknown, headers: Record<string, string> = {}) => {
        res.writeHead(status, { 'Content-Type': 'application/json', ...headers }).end(JSON.stringify(json));
      };
      if (req.method === 'GET' && url.pathname === '/.well-known/wlcg-tape-rest-api') {
        send(200, { sitename: 'tokenpool-test', description: 'Tape REST API stand-in', endpoints: [{ uri: `${base}${TAPE_API}`, version: 'v1', metadata: {} }] });
        return;
      }
      if (outage !== null && url.pathname.startsWith(TAPE_API)) {
        send(outage, { title: 'storage unavailable', status: outage });
        return;
      }
      // gfal2 posts to ".../stage/" (trailing slash); the API names it ".../stage".
      if (req.method === 'POST' && (url.pathname === `${TAPE_API}/stage` || url.pathname === `${TAPE_API}/stage/`)) {
        let paths: string[];
        try {
          paths = (JSON.parse(body) as { files: Array<{ path: string }> }).files.map((f) => f.path);
        } catch {
          send(400, { title: 'body must be {"files":[{"path":...}]}' });
          return;
        }
        const id = `req-${nextId++}`;
        stageRequests.set(id, { id, paths, createdAt: Math.floor(Date.now() / 1000) });
        send(201, { requestId: id }, { Location: `${base}${TAPE_API}/stage/${id}` });
        return;
      }
      const poll = new RegExp(`^${TAPE_API}/stage/([^/]+)$`).exec(url.pathname);
      if (req.method === 'GET' && poll) {
        const r = stageRequests.get(poll[1]!);
        if (!r) {
          send(404, { title: `no stage request ${poll[1]}` });
          return;
        }
        send(200, { id: r.id, createdAt: r.createdAt, startedAt: r.createdAt, files: r.paths.map(fileState) });
        return;
      }
      send(404, { title: `${req.method} ${url.pathname} is not part of this stand-in` });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    base: `http://127.0.0.1:${port}`,
    stageRequests,
    setOnline(...paths) {
      for (const p of paths) online.add(p);
    },
    setFailed(path, message) {
      failed.set(path, message);
    },
    setOutage(status) {
      outage = status;
    },
    count: (method, pathPrefix) => calls.filter((c) => c.method === method && c.path.startsWith(pathPrefix)).length,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
