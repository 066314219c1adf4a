/**
 * A step image (an unpacked root file system, as bwrap runs it) as a local podman image, so that
 * `cwltool --podman` can run a CWL step's tools in it without a registry. The image is named after
 * the tree's path and a digest of its listing, so that every agent on the node finds the one an
 * earlier agent imported, and a changed tree gets a new name.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../../server/log.js';
import { EXIT } from '../../server/token.js';
import { NodeFault } from '../phases.js';
import { findExecutable } from './which.js';

/** An import copies the whole tree into podman's storage; a LOFAR image is a few GB. */
const IMPORT_TIMEOUT_MS = 30 * 60_000;
const CHECK_TIMEOUT_MS = 60_000;

/** Per agent: the tree is listed once per path and mtime, not once per token. */
const named = new Map<string, Promise<string>>();

export function podmanImage(dir: string, log: Logger): Promise<string> {
  const key = `${dir}\0${fs.statSync(dir).mtimeMs}`;
  let name = named.get(key);
  if (!name) {
    name = ensureImported(dir, log);
    named.set(key, name);
    name.catch(() => named.delete(key));
  }
  return name;
}

/**
 * cwltool --podman passes `--userns=keep-id`, which podman refuses as root ("keep-id is only
 * supported in rootless mode"): the agent must run as an unprivileged user with rootless podman.
 */
export function checkRootlessPodman(): void {
  if (!findExecutable('podman')) throw noPodman('podman is not on PATH');
  if (process.getuid?.() === 0) {
    throw noPodman('cwltool --podman needs rootless podman (it runs `podman run --userns=keep-id`, which podman refuses as root); run the agent as an unprivileged user with subordinate ids in /etc/subuid and /etc/subgid');
  }
}

export function imageName(dir: string, digest: string): string {
  const base = path.basename(dir).toLowerCase().replace(/[^a-z0-9._-]+/g, '-').replace(/^[._-]+/, '') || 'image';
  return `localhost/tokenpool-${base}:${digest.slice(0, 16)}`;
}

async function ensureImported(dir: string, log: Logger): Promise<string> {
  const name = imageName(dir, treeDigest(dir));
  const exists = await run('podman', ['image', 'exists', name], CHECK_TIMEOUT_MS);
  if (exists.code === 0) return name;
  if (exists.code !== 1) throw noPodman(`podman image exists ${name}: ${exists.stderr.trim() || `exit code ${exists.code}`}`);
  log.info({ image: dir, podman: name }, 'importing the image into podman');
  // The tree goes to podman as a tar stream: no temporary archive the size of the image.
  const tar = spawn('tar', ['-C', dir, '-cf', '-', '.'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const imported = run('podman', ['import', '--quiet', '-', name], IMPORT_TIMEOUT_MS, tar.stdout);
  const tarExit = new Promise<number | null>((resolve) => tar.on('close', resolve));
  const [res, tarCode] = await Promise.all([imported, tarExit]);
  if (tarCode !== 0) throw noPodman(`tar of ${dir} failed (exit code ${tarCode}); is the image readable by this user?`);
  if (res.code !== 0) throw noPodman(`podman import of ${dir} as ${name} failed: ${res.stderr.trim() || `exit code ${res.code}`}`);
  return name;
}

/** sha256 of the tree's listing: each entry's path, type, size, mtime and link target. */
function treeDigest(root: string): string {
  const hash = createHash('sha256').update(path.resolve(root));
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = path.join(dir, e.name);
      const st = fs.lstatSync(p);
      hash.update(`\0${path.relative(root, p)}\0${st.mode}\0${st.size}\0${st.mtimeMs}`);
      if (e.isSymbolicLink()) hash.update(`\0${fs.readlinkSync(p)}`);
      else if (e.isDirectory()) walk(p);
    }
  };
  walk(root);
  return hash.digest('hex');
}

function run(file: string, args: string[], timeoutMs: number, stdin?: NodeJS.ReadableStream): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(file, args, { stdio: [stdin ? 'pipe' : 'ignore', 'ignore', 'pipe'], timeout: timeoutMs });
    if (stdin) stdin.pipe(child.stdin!);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    child.on('error', (err) => resolve({ code: null, stderr: err.message }));
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

function noPodman(detail: string): NodeFault {
  return new NodeFault('no runtime for the CWL step', EXIT.imageNotFound, detail);
}
