/**
 * Builds the tests' own nginx module (test/helpers/nginx-x509-proxy: `ssl_allow_proxy_certs`)
 * against the installed nginx, the way Debian builds its libnginx-mod-* packages: nginx-dev's
 * sources configured with the flags nginx was built with (`conf_flags`), then `make modules`.
 * The .so is kept in the temporary directory under a key of nginx's version and the module's
 * source, so only the first run on a machine pays the ~20 s of configure.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
/** nginx-dev: the nginx sources Debian's module packages build against */
const NGINX_SRC = '/usr/share/nginx/src';
const MODULE_DIR = fileURLToPath(new URL('./nginx-x509-proxy', import.meta.url));
const NAME = 'ngx_http_x509_proxy_module';

export class NginxModuleBuildError extends Error {}

/** Path of the built module (.so), building it first when this machine has none for this nginx. */
export async function x509ProxyModule(): Promise<string> {
  if (!fs.existsSync(path.join(NGINX_SRC, 'conf_flags'))) throw new NginxModuleBuildError(`no nginx sources at ${NGINX_SRC}: apt-get install nginx-dev gcc make`);
  const { stderr: version } = await run('nginx', ['-v']);
  const key = createHash('sha256').update(version).update(fs.readFileSync(path.join(NGINX_SRC, 'conf_flags')));
  for (const f of fs.readdirSync(MODULE_DIR).sort()) key.update(f).update(fs.readFileSync(path.join(MODULE_DIR, f)));
  const cacheDir = path.join(os.tmpdir(), 'tokenpool-nginx-modules');
  const target = path.join(cacheDir, `${NAME}-${key.digest('hex').slice(0, 16)}.so`);
  if (fs.existsSync(target)) return target;

  fs.mkdirSync(cacheDir, { recursive: true });
  const work = fs.mkdtempSync(path.join(cacheDir, 'build-'));
  try {
    // configure writes a Makefile into the source tree: build from a copy, not the system's.
    const src = path.join(work, 'src');
    fs.cpSync(NGINX_SRC, src, { recursive: true });
    const build = path.join(work, 'objs');
    const script = `. ./conf_flags && ./configure "\${NGX_CONF_FLAGS[@]}" --with-cc-opt=-fPIC --with-ld-opt=-fPIC --add-dynamic-module="$1" --builddir="$2" && make -f "$2/Makefile" modules`;
    await run('bash', ['-c', script, 'build', MODULE_DIR, build], { cwd: src, timeout: 300_000, maxBuffer: 64 << 20 }).catch((err: { stderr?: string; message: string }) => {
      throw new NginxModuleBuildError(`building ${NAME} failed (needs nginx-dev, gcc, make): ${(err.stderr ?? err.message).slice(-2000)}`);
    });
    // Another test file may be building the same module: the rename makes either copy whole.
    fs.renameSync(path.join(build, `${NAME}.so`), target);
    return target;
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}
