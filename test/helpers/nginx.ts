/**
 * A real WebDAV storage element for tests: nginx (nginx-light + libnginx-mod-http-dav-ext) on a
 * random 127.0.0.1 port with a temporary config and document root.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { x509ProxyModule } from './nginx-module.js';
import { njsVerifier, SE_AUTH_NGINX, type SeKeys } from './se-auth.js';

export interface Nginx {
  /** http://127.0.0.1:<port> */
  url: string;
  port: number;
  /** The document root: files here are served at url/<relative path> */
  root: string;
  /** With x509: https://127.0.0.1:<port> of the server that takes grid proxies, same document root */
  httpsUrl?: string;
  /** Stops nginx (the port then refuses connections); start() brings it back on the same port. */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** With accessLog: the requests served so far, `METHOD URI STATUS` */
  requests(): string[];
  /** Stops nginx and removes its directory */
  close(): Promise<void>;
}

/** libnginx-mod-http-js */
export const NJS_MODULE = '/usr/lib/nginx/modules/ngx_http_js_module.so';

const DAV_EXT_CANDIDATES = ['/usr/lib/nginx/modules/ngx_http_dav_ext_module.so', '/usr/lib64/nginx/modules/ngx_http_dav_ext_module.so'];

/** The dav-ext module's .so: from the package's usual place or the modules-enabled snippet. */
export function davExtModule(): string {
  for (const p of DAV_EXT_CANDIDATES) if (fs.existsSync(p)) return p;
  const enabled = '/etc/nginx/modules-enabled';
  for (const f of fs.existsSync(enabled) ? fs.readdirSync(enabled) : []) {
    const m = /load_module\s+([^;]*dav_ext[^;]*);/.exec(fs.readFileSync(path.join(enabled, f), 'utf8'));
    if (m) return path.isAbsolute(m[1]!) ? m[1]! : path.join('/usr/share/nginx', m[1]!);
  }
  throw new Error('nginx WebDAV module not found: apt-get install nginx-light libnginx-mod-http-dav-ext');
}

export interface NginxOptions {
  /** Refuse every request without a valid macaroon or bearer token (njs in an auth_request, se-auth.ts) */
  auth?: SeKeys;
  /** Log `METHOD URI STATUS` lines to <dir>/access.log (see Nginx.requests) */
  accessLog?: boolean;
  /** A second server, https, that authorises by X.509 client certificate (grid proxies) */
  x509?: X509Options;
}

export interface X509Options {
  /** The server's certificate and key (PEM) */
  cert: Buffer;
  key: Buffer;
  /** CAs that client certificates must chain to (PEM file) */
  caFile: string;
  /** End-entity DNs in grid form (/DC=…/CN=…) allowed in, as a grid-mapfile lists them */
  authorised: string[];
}

/** The storage element's WebDAV: what every location serves once the request is allowed in. */
const DAV = `dav_methods PUT DELETE MKCOL COPY MOVE;
      dav_ext_methods PROPFIND OPTIONS;
      create_full_put_path on;
      dav_access user:rw group:r all:r;
      autoindex on;`;

/**
 * The https server of an X.509 storage element: the client's chain verified by OpenSSL against
 * the CAs, proxies allowed (ssl_allow_proxy_certs, nginx-x509-proxy), and the end-entity DN — the
 * proxy's subject without its trailing /CN=<number> parts — looked up in the authorised list.
 * No or a failed certificate (expired, untrusted) is 401, an unlisted DN 403.
 */
function x509Server(dir: string, port: number, root: string, x509: X509Options): { http: string; server: string } {
  fs.writeFileSync(path.join(dir, 'host.pem'), x509.cert);
  fs.writeFileSync(path.join(dir, 'host.key'), x509.key, { mode: 0o600 });
  const quote = (s: string) => `"${s.replace(/["\\]/g, (c) => `\\${c}`)}"`;
  return {
    http: `map_hash_bucket_size 256;
  map $ssl_client_s_dn_legacy $se_x509_user { "~^(?<eec>.*?)(/CN=[0-9]+)*$" $eec; }
  map $se_x509_user $se_x509_authorised {
    default 0;
    ${x509.authorised.map((dn) => `${quote(dn)} 1;`).join('\n    ')}
  }`,
    server: `server {
    listen 127.0.0.1:${port} ssl;
    ssl_certificate ${dir}/host.pem;
    ssl_certificate_key ${dir}/host.key;
    ssl_client_certificate ${x509.caFile};
    ssl_verify_client optional;
    ssl_verify_depth 10;
    ssl_allow_proxy_certs on;
    # A certificate that fails verification ends here instead of nginx's plain 400.
    error_page 495 = @x509_refused;
    location @x509_refused { return 401; }
    root ${root};
    location / {
      if ($ssl_client_verify != SUCCESS) { return 401; }
      if ($se_x509_authorised = 0) { return 403; }
      ${DAV}
    }
  }`,
  };
}

export async function startNginx(opts: NginxOptions = {}): Promise<Nginx> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-nginx-'));
  const root = path.join(dir, 'data');
  fs.mkdirSync(root);
  fs.mkdirSync(path.join(dir, 'tmp'));
  const port = await freePort();
  const httpsPort = opts.x509 ? await freePort() : 0;
  const x509 = opts.x509 ? { module: `load_module ${await x509ProxyModule()};`, ...x509Server(dir, httpsPort, root, opts.x509) } : { module: '', http: '', server: '' };
  // nginx's worker must own what it writes: as root the worker runs as root; otherwise it is us.
  const userLine = process.getuid?.() === 0 ? 'user root;' : '';
  const tmp = path.join(dir, 'tmp');
  if (opts.auth) fs.writeFileSync(path.join(dir, 'se-auth.js'), njsVerifier(opts.auth));
  const njs = opts.auth
    ? { module: `load_module ${NJS_MODULE};`, http: `js_path ${dir};\n  ${SE_AUTH_NGINX.http}`, server: SE_AUTH_NGINX.server, location: SE_AUTH_NGINX.location }
    : { module: '', http: '', server: '', location: '' };
  const accessLog = opts.accessLog ? `log_format calls '$request_method $uri $status';\n  access_log ${dir}/access.log calls;` : 'access_log off;';
  fs.writeFileSync(
    path.join(dir, 'nginx.conf'),
    `load_module ${davExtModule()};
${njs.module}
${x509.module}
${userLine}
worker_processes 2;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 512; }
http {
  ${accessLog}
  ${njs.http}
  ${x509.http}
  client_body_temp_path ${tmp}/body;
  proxy_temp_path ${tmp}/proxy;
  fastcgi_temp_path ${tmp}/fastcgi;
  uwsgi_temp_path ${tmp}/uwsgi;
  scgi_temp_path ${tmp}/scgi;
  client_max_body_size 0;
  sendfile on;
  tcp_nopush on;
  types { }
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:${port};
    root ${root};
    ${njs.server}
    location / {
      ${njs.location}
      ${DAV}
    }
  }
  ${x509.server}
}
`,
  );
  let child: ChildProcess | null = null;
  const start = async () => {
    child = spawn('nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-e', path.join(dir, 'error.log'), '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    // A failed start fails at once with nginx's own words (stderr and the tail of its error log).
    const logTail = () => `${stderr}${fs.existsSync(path.join(dir, 'error.log')) ? fs.readFileSync(path.join(dir, 'error.log'), 'utf8').slice(-2000) : ''}`;
    const exited = new Promise<never>((_r, reject) => child!.once('exit', (code) => reject(new Error(`nginx exited (${code}): ${logTail()}`))));
    try {
      await Promise.race([Promise.all([waitForPort(port), ...(httpsPort ? [waitForPort(httpsPort)] : [])]), exited]);
    } catch (err) {
      await stop();
      throw new Error(`${(err as Error).message}\n${logTail()}`);
    }
  };
  const stop = async () => {
    const c = child;
    child = null;
    if (!c || c.exitCode !== null) return;
    const gone = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    await gone;
  };
  await start();
  return {
    requests: () => (fs.existsSync(path.join(dir, 'access.log')) ? fs.readFileSync(path.join(dir, 'access.log'), 'utf8').split('\n').filter(Boolean) : []),
    url: `http://127.0.0.1:${port}`,
    port,
    ...(opts.x509 ? { httpsUrl: `https://127.0.0.1:${httpsPort}` } : {}),
    root,
    start,
    stop,
    async close() {
      await stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nginx did not listen on 127.0.0.1:${port}`);
}
