/**
 * What the test suite runs for real, and the Debian package each comes from. One list for the
 * preflight check (test/setup/preflight.ts) and the installer (test/setup/install.sh reads it with
 * `--packages`).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { findExecutable } from '../../agent/node/which.js';

export interface Requirement {
  /** What a test needs, as a user would look for it. */
  what: string;
  /** The Debian package that provides it. */
  pkg: string;
  present: () => boolean;
  /** Only the real Apache CouchDB of the CouchDB test kit needs it (its start scripts check too). */
  forCouchDbKit?: boolean;
}

/** sbin directories are not on every user's PATH, but these daemons are started by path lookup as root. */
const SEARCH_PATH = [process.env.PATH ?? '', '/usr/sbin', '/sbin'].join(path.delimiter);
const onPath = (bin: string) => () => findExecutable(bin, SEARCH_PATH) !== null;
const anyFile = (...files: string[]) => () => files.some((f) => fs.existsSync(f));
const debianPackage = (pkg: string) => () => spawnSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8' }).stdout?.includes('install ok installed') ?? false;
const couchDbLibrary = (pkg: string): Requirement => ({ what: `${pkg} (Apache CouchDB links against it)`, pkg, present: debianPackage(pkg), forCouchDbKit: true });

export const REQUIREMENTS: Requirement[] = [
  { what: 'munged', pkg: 'munge', present: onPath('munged') },
  { what: 'slurmctld', pkg: 'slurmctld', present: onPath('slurmctld') },
  { what: 'slurmd', pkg: 'slurmd', present: onPath('slurmd') },
  { what: 'sbatch', pkg: 'slurm-client', present: onPath('sbatch') },
  { what: 'nginx', pkg: 'nginx-light', present: onPath('nginx') },
  {
    what: 'nginx WebDAV module',
    pkg: 'libnginx-mod-http-dav-ext',
    present: anyFile('/usr/lib/nginx/modules/ngx_http_dav_ext_module.so', '/usr/lib64/nginx/modules/ngx_http_dav_ext_module.so'),
  },
  { what: 'nginx njs module (storage element checks macaroons and tokens)', pkg: 'libnginx-mod-http-js', present: anyFile('/usr/lib/nginx/modules/ngx_http_js_module.so') },
  // The storage element that takes grid proxies loads a module of the tests' own, built against nginx's sources.
  { what: 'nginx sources (to build the tests\' proxy-certificate module)', pkg: 'nginx-dev', present: anyFile('/usr/share/nginx/src/conf_flags') },
  { what: 'C compiler (cc)', pkg: 'gcc', present: onPath('cc') },
  { what: 'make', pkg: 'make', present: onPath('make') },
  { what: 'gfal-copy', pkg: 'gfal2-util-scripts', present: onPath('gfal-copy') },
  { what: 'gfal2 file plugin', pkg: 'gfal2-plugin-file', present: anyFile('/usr/lib/x86_64-linux-gnu/gfal2-plugins/libgfal_plugin_file.so', '/usr/lib/aarch64-linux-gnu/gfal2-plugins/libgfal_plugin_file.so') },
  { what: 'gfal2 http plugin', pkg: 'gfal2-plugin-http', present: anyFile('/usr/lib/x86_64-linux-gnu/gfal2-plugins/libgfal_plugin_http.so', '/usr/lib/aarch64-linux-gnu/gfal2-plugins/libgfal_plugin_http.so') },
  { what: 'bwrap', pkg: 'bubblewrap', present: onPath('bwrap') },
  { what: 'busybox (static)', pkg: 'busybox-static', present: anyFile('/bin/busybox', '/usr/bin/busybox') },
  { what: 'chromium', pkg: 'chromium', present: () => fs.existsSync(process.env.CHROMIUM_PATH ?? '/usr/bin/chromium') },
  { what: 'openssl', pkg: 'openssl', present: onPath('openssl') },
  { what: 'curl', pkg: 'curl', present: onPath('curl') },
  { what: 'python3', pkg: 'python3', present: onPath('python3') },
  { what: 'cwltool', pkg: 'cwltool', present: onPath('cwltool') },
  { what: 'podman (CWL steps in a container)', pkg: 'podman', present: onPath('podman') },
  // podman's default OCI runtime, crun, refuses hosts whose cgroup v2 part has controllers next to v1 ("hybrid mode")
  { what: 'runc', pkg: 'runc', present: onPath('runc') },
  { what: 'newuidmap (rootless podman)', pkg: 'uidmap', present: onPath('newuidmap') },
  { what: 'xz', pkg: 'xz-utils', present: onPath('xz'), forCouchDbKit: true },
  ...['libicu72', 'libssl3', 'libsystemd0', 'libtinfo6', 'zlib1g', 'libstdc++6'].map(couchDbLibrary),
];

export function missingRequirements(opts: { couchDbKit: boolean }): Requirement[] {
  return REQUIREMENTS.filter((r) => (opts.couchDbKit || !r.forCouchDbKit) && !r.present());
}
