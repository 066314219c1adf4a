/**
 * A real WebDAV storage element for tests: nginx (nginx-light + libnginx-mod-http-dav-ext) on a
 * random 127.0.0.1 port with a temporary config and document root.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { njsVerifier, type SeKeys } from './se-auth.js';

export interface Nginx {
  /** http://127.0.0.1:<port> */
  url: string;
  port: number;
  /** The document root: files here are served at url/<relative path> */
  root: string;
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
  /** Refuse every request without a valid macaroon or bearer token (njs, se-auth.ts) */
  auth?: SeKeys;
  /** Log `METHOD URI STATUS` lines to <dir>/access.log (see Nginx.requests) */
  accessLog?: boolean;
}

export async function startNginx(opts: NginxOptions = {}): Promise<Nginx> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-nginx-'));
  const root = path.join(dir, 'data');
  fs.mkdirSync(root);
  fs.mkdirSync(path.join(dir, 'tmp'));
  const port = await freePort();
  // nginx's worker must own what it writes: as root the worker runs as root; otherwise it is us.
  const userLine = process.getuid?.() === 0 ? 'user root;' : '';
  const tmp = path.join(dir, 'tmp');
  if (opts.auth) fs.writeFileSync(path.join(dir, 'se-auth.js'), njsVerifier(opts.auth));
  const njs = opts.auth ? { module: `load_module ${NJS_MODULE};`, http: `js_path ${dir};\n  js_import auth from se-auth.js;\n  js_set $se_auth auth.check;`, location: `if ($se_auth = "401") { return 401; }\n      if ($se_auth = "403") { return 403; }` } : { module: '', http: '', location: '' };
  const accessLog = opts.accessLog ? `log_format calls '$request_method $uri $status';\n  access_log ${dir}/access.log calls;` : 'access_log off;';
  fs.writeFileSync(
    path.join(dir, 'nginx.conf'),
    `load_module ${davExtModule()};
${njs.module}
${userLine}
worker_processes 2;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 512; }
http {
  ${accessLog}
  ${njs.http}
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
    location / {
      ${njs.location}
      dav_methods PUT DELETE MKCOL COPY MOVE;
      dav_ext_methods PROPFIND OPTIONS;
      create_full_put_path on;
      dav_access user:rw group:r all:r;
      autoindex on;
    }
  }
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
      await Promise.race([waitForPort(port), exited]);
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
