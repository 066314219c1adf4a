/**
 * A stand-in for ASTRON's StageIT on loopback, speaking its API as its Python client uses it:
 * `Authorization: Token <api token>` on every call (401 `{"detail": "Invalid token."}` otherwise);
 * REST `POST requests/` ({surls, notify, request_type} → {id}), `GET requests/<id>/convert2webdav/`
 * (the WebDAV URLs of the request's files); GraphQL `POST graphql/` for `request(id: N) {
 * currentStatus response macaroons { content validUntil ltaSite { name } } }` (response: a JSON
 * string with online, progressing and errors {surl: reason}) and `requests(when_Gte: …) { edges {
 * node { id surls { surl } } } }`; GraphQL errors as `{"errors": [{"message"}]}`. The test decides
 * what comes online, what fails and why, and can make the service answer 503.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface StageItRequestState {
  id: number;
  surls: string[];
  status: string;
  online: Set<string>;
  errors: Map<string, string>;
  when: Date;
}

export interface StageItStandIn {
  /** The API base, ending in / */
  url: string;
  token: string;
  requests: Map<number, StageItRequestState>;
  /** `METHOD path` of every authorised call */
  calls: string[];
  /** Brings files online (all when no list); status follows */
  bringOnline(id: number, surls?: string[]): void;
  fail(id: number, surl: string, reason: string): void;
  setStatus(id: number, status: string): void;
  /** The next n calls answer this HTTP status */
  outage(status: number, n: number): void;
  close(): Promise<void>;
}

export interface StageItOptions {
  token: string;
  /** WebDAV base for convert2webdav: <base><path of the SURL from /pnfs/> */
  webdavBase: string;
  /** The macaroons a request gets once something is online */
  macaroons: () => Array<{ site: string; content: string; validUntil: string }>;
  firstId?: number;
}

export async function startStageIt(opts: StageItOptions): Promise<StageItStandIn> {
  const requests = new Map<number, StageItRequestState>();
  const calls: string[] = [];
  let nextId = opts.firstId ?? 510001;
  let outage = { status: 0, n: 0 };
  const base = '/stageit/api/staging/';
  const json = (res: http.ServerResponse, status: number, body: unknown) => res.writeHead(status, { 'Content-Type': 'application/json' }).end(JSON.stringify(body));
  const webdav = (surl: string) => {
    const p = new URL(surl).pathname;
    return opts.webdavBase + p.slice(p.indexOf('/pnfs/'));
  };
  const settle = (r: StageItRequestState) => {
    const done = r.online.size + r.errors.size;
    if (done === r.surls.length) r.status = r.errors.size === 0 ? 'success' : r.online.size === 0 ? 'failed' : 'partial success';
    else if (done > 0) r.status = 'in progress';
  };

  const graphql = (query: string): unknown => {
    const one = /request\(id:\s*(\d+)\)/.exec(query);
    if (one) {
      const r = requests.get(Number(one[1]));
      if (!r) return { data: { request: null }, errors: [{ message: 'Request matching query does not exist.' }] };
      const response = r.status === 'new' ? null : JSON.stringify({ online: [...r.online], progressing: r.surls.filter((s) => !r.online.has(s) && !r.errors.has(s)), errors: Object.fromEntries(r.errors) });
      const macaroons = r.online.size > 0 ? opts.macaroons().map((m) => ({ content: m.content, validUntil: m.validUntil, ltaSite: { name: m.site } })) : [];
      return { data: { request: { id: String(r.id), currentStatus: r.status, response, macaroons } } };
    }
    const since = /requests\(when_Gte:\s*"([^"]+)"/.exec(query);
    if (since) {
      const from = Date.parse(since[1]!);
      const edges = [...requests.values()].filter((r) => r.when.getTime() >= from).map((r) => ({ node: { id: String(r.id), surls: r.surls.map((surl) => ({ surl })) } }));
      return { data: { requests: { edges } } };
    }
    return { errors: [{ message: `Cannot query: ${query.slice(0, 60)}` }] };
  };

  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      if (req.headers.authorization !== `Token ${opts.token}`) return json(res, 401, { detail: 'Invalid token.' });
      const path = (req.url ?? '').split('?')[0]!;
      calls.push(`${req.method} ${path.slice(base.length)}`);
      if (outage.n > 0) {
        outage.n--;
        return json(res, outage.status, { detail: 'Service temporarily unavailable' });
      }
      if (!path.startsWith(base)) return json(res, 404, { detail: 'Not found.' });
      const rest = path.slice(base.length);
      let parsed: Record<string, unknown> = {};
      try {
        parsed = body ? (JSON.parse(body) as Record<string, unknown>) : {};
      } catch {
        return json(res, 400, { detail: 'JSON parse error' });
      }
      if (req.method === 'POST' && rest === 'requests/') {
        const surls = parsed.surls;
        if (!Array.isArray(surls) || surls.length === 0 || surls.some((s) => typeof s !== 'string' || !s.startsWith('srm://'))) return json(res, 400, { surls: ['Expected a nonempty list of SRM URLs.'] });
        if (parsed.request_type !== 'stage') return json(res, 400, { request_type: ['"' + String(parsed.request_type) + '" is not a valid choice.'] });
        const id = nextId++;
        requests.set(id, { id, surls: surls as string[], status: 'new', online: new Set(), errors: new Map(), when: new Date() });
        return json(res, 201, { id, request_type: 'stage', surls });
      }
      if (req.method === 'POST' && rest === 'graphql/') return json(res, 200, graphql(String(parsed.query ?? '')));
      const conv = /^requests\/(\d+)\/convert2webdav\/$/.exec(rest);
      if (req.method === 'GET' && conv) {
        const r = requests.get(Number(conv[1]));
        return r ? json(res, 200, r.surls.map(webdav)) : json(res, 404, { detail: 'Not found.' });
      }
      return json(res, 404, { detail: 'Not found.' });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const get = (id: number) => {
    const r = requests.get(id);
    if (!r) throw new Error(`no StageIT request ${id}`);
    return r;
  };
  return {
    url: `http://127.0.0.1:${port}${base}`,
    token: opts.token,
    requests,
    calls,
    bringOnline(id, surls) {
      const r = get(id);
      for (const s of surls ?? r.surls) r.online.add(s);
      settle(r);
    },
    fail(id, surl, reason) {
      const r = get(id);
      r.errors.set(surl, reason);
      settle(r);
    },
    setStatus(id, status) {
      get(id).status = status;
    },
    outage(status, n) {
      outage = { status, n };
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
