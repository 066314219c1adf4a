/**
 * A stand-in for the LOFAR LTA stager on loopback, speaking its XML-RPC protocol (add_getid,
 * getstatus, getstagedurls, getprogress) behind basic auth. The test decides which files come
 * online and what status a request reports. Requests are parsed here independently of the client.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface StageRequest {
  id: number;
  surls: string[];
  status: string;
  online: Set<string>;
}

export interface LtaStandIn {
  url: string;
  user: string;
  password: string;
  requests: Map<number, StageRequest>;
  /** Method names in the order they were called */
  calls: string[];
  /** Brings files of a request online (all when no list) */
  bringOnline(id: number, surls?: string[]): void;
  setStatus(id: number, status: string): void;
  close(): Promise<void>;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const str = (s: string) => `<value><string>${esc(s)}</string></value>`;
const int = (n: number) => `<value><int>${n}</int></value>`;
const member = (name: string, value: string) => `<member><name>${esc(name)}</name>${value}</member>`;
const respond = (value: string) => `<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n${value}\n</param>\n</params>\n</methodResponse>\n`;
const fault = (code: number, text: string) =>
  `<?xml version='1.0'?>\n<methodResponse><fault>${`<value><struct>${member('faultCode', int(code))}${member('faultString', str(text))}</struct></value>`}</fault></methodResponse>\n`;

export async function startLtaStager(opts: { user?: string; password?: string; firstId?: number } = {}): Promise<LtaStandIn> {
  const user = opts.user ?? 'lofaruser';
  const password = opts.password ?? 'stager-secret-42';
  const requests = new Map<number, StageRequest>();
  const calls: string[] = [];
  let nextId = opts.firstId ?? 40001;
  const expected = 'Basic ' + Buffer.from(`${user}:${password}`).toString('base64');

  const handle = (method: string, body: string): string => {
    const ints = [...body.matchAll(/<(?:int|i4)>\s*(-?\d+)\s*<\/(?:int|i4)>/g)].map((m) => Number(m[1]));
    const req = (id: number | undefined) => (id === undefined ? undefined : requests.get(id));
    switch (method) {
      case 'LtaStager.add_getid': {
        const surls = [...body.matchAll(/<string>([^<]*)<\/string>/g)].map((m) => m[1]!.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&'));
        const id = nextId++;
        requests.set(id, { id, surls, status: 'new', online: new Set() });
        return respond(int(id));
      }
      case 'LtaStager.getstatus': {
        const r = req(ints[0]);
        return r ? respond(str(r.status)) : fault(1, `no request ${ints[0]}`);
      }
      case 'LtaStager.getstagedurls': {
        const r = req(ints[0]);
        return r ? respond(`<value><array><data>${[...r.online].map(str).join('')}</data></array></value>`) : fault(1, `no request ${ints[0]}`);
      }
      case 'LtaStager.getprogress': {
        const running = [...requests.values()].filter((r) => r.status !== 'success');
        const entries = running.map((r) =>
          member(
            String(r.id),
            `<value><struct>${member('File count', int(r.surls.length))}${member('Files done', int(r.online.size))}${member('Percent done', int(Math.floor((100 * r.online.size) / Math.max(1, r.surls.length))))}${member('Status', str(r.status))}${member('Location', str('sara'))}</struct></value>`,
          ),
        );
        return respond(`<value><struct>${entries.join('')}</struct></value>`);
      }
      default:
        return fault(2, `method "${method}" is not supported`);
    }
  };

  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      if (req.headers.authorization !== expected) {
        res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="stager"' }).end();
        return;
      }
      const method = /<methodName>([^<]*)<\/methodName>/.exec(body)?.[1] ?? '';
      calls.push(method);
      res.writeHead(200, { 'Content-Type': 'text/xml' }).end(handle(method, body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/service-public/xmlrpc`,
    user,
    password,
    requests,
    calls,
    bringOnline(id, surls) {
      const r = requests.get(id);
      if (!r) throw new Error(`no stage request ${id}`);
      for (const s of surls ?? r.surls) r.online.add(s);
      r.status = r.online.size === r.surls.length ? 'success' : 'in progress';
    },
    setStatus(id, status) {
      requests.get(id)!.status = status;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
