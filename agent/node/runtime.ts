/**
 * How the step's command line runs under the software image: apptainer/singularity `exec`
 * (a .sif or an unpacked tree), bubblewrap (an unpacked root file system), or natively (optionally
 * after sourcing an init script that lives in the image directory). podman runs CWL steps only
 * (cwltool --podman, agent/cwl.ts).
 */
import fs from 'node:fs';
import path from 'node:path';
import { EXIT } from '../../server/token.js';
import { NodeFault } from '../phases.js';
import { findExecutable } from './which.js';

export const RUNTIMES = ['auto', 'apptainer', 'singularity', 'podman', 'bwrap', 'none'] as const;
export type RuntimeChoice = (typeof RUNTIMES)[number];
export type Runtime = Exclude<RuntimeChoice, 'auto'>;

export interface RunImage {
  path: string;
  kind: 'file' | 'dir';
}

/** The runtime for an image on this node; throws a NodeFault when none can run it. */
export function chooseRuntime(choice: RuntimeChoice, image: RunImage | null): Runtime {
  if (!image) return 'none';
  const unavailable = (detail: string) => new NodeFault(`no runtime for image: ${image.path}`, EXIT.imageNotFound, detail);
  if (choice === 'auto') {
    for (const r of ['apptainer', 'singularity'] as const) if (findExecutable(r)) return r;
    if (image.kind === 'dir' && findExecutable('bwrap')) return 'bwrap';
    throw unavailable(
      image.kind === 'file'
        ? 'a .sif image needs apptainer or singularity on PATH'
        : 'an unpacked image needs apptainer, singularity or bwrap (bubblewrap) on PATH, or --runtime none',
    );
  }
  if (choice !== 'none' && !findExecutable(choice)) throw unavailable(`--runtime ${choice}, but ${choice} is not on PATH`);
  if ((choice === 'bwrap' || choice === 'none' || choice === 'podman') && image.kind !== 'dir') {
    throw unavailable(`--runtime ${choice} needs an unpacked image directory; ${image.path} is a file`);
  }
  return choice;
}

/**
 * The container engine cwltool hands a CWL step's tools to (`container: node`): the node's runtime
 * when it is one cwltool knows, with auto apptainer or singularity, else podman.
 */
export function cwlRuntime(choice: RuntimeChoice, image: RunImage | null): 'apptainer' | 'singularity' | 'podman' {
  const unavailable = (detail: string) => new NodeFault('no runtime for the CWL step', EXIT.imageNotFound, detail);
  const engines = ['apptainer', 'singularity', 'podman'] as const;
  const runtime = choice === 'auto' ? engines.find((r) => findExecutable(r)) : engines.find((r) => r === choice);
  if (!runtime) {
    throw unavailable(
      choice === 'auto'
        ? 'a CWL step with container: node needs apptainer, singularity or podman on PATH'
        : `cwltool cannot run containers with --runtime ${choice}; use --runtime apptainer, singularity or podman (or container: none in the definition)`,
    );
  }
  if (!findExecutable(runtime)) throw unavailable(`--runtime ${runtime}, but ${runtime} is not on PATH`);
  if (runtime === 'podman' && image && image.kind !== 'dir') throw unavailable(`podman runs an unpacked image directory (imported as a local image); ${image.path} is a file`);
  return runtime;
}

export interface WrapOptions {
  scratchDir: string;
  /** Extra host paths to make visible inside the container (same path inside) */
  binds: string[];
  /** For --runtime none: a script in (or relative to) the image directory to source first */
  initScript?: string;
}

export function wrapCommand(runtime: Runtime, image: RunImage | null, command: string, opts: WrapOptions): { file: string; args: string[] } {
  const sh = ['/bin/sh', '-c', command];
  switch (runtime) {
    case 'apptainer':
    case 'singularity': {
      const binds = [opts.scratchDir, ...opts.binds].flatMap((p) => ['--bind', p]);
      return { file: findExecutable(runtime) ?? runtime, args: ['exec', ...binds, '--pwd', opts.scratchDir, image!.path, ...sh] };
    }
    case 'bwrap':
      return { file: findExecutable('bwrap') ?? 'bwrap', args: [...bwrapArgs(image!.path, opts), ...sh] };
    case 'podman':
      throw new NodeFault('no runtime for a command step', EXIT.imageNotFound, '--runtime podman runs CWL steps (cwltool --podman); a command step needs apptainer, singularity or bwrap');
    case 'none': {
      if (!image || !opts.initScript) return { file: '/bin/sh', args: ['-c', command] };
      const init = path.resolve(image.path, opts.initScript);
      return { file: '/bin/sh', args: ['-c', `. ${shellQuote(init)} && ${command}`] };
    }
  }
}

/**
 * The image's top-level entries are bound one by one onto bwrap's own tmpfs root (instead of the
 * image as `/`), so that the scratch directory can be bound at its host path even when the image
 * has no such parent directory.
 */
function bwrapArgs(root: string, opts: WrapOptions): string[] {
  const args: string[] = [];
  for (const entry of fs.readdirSync(root, { withFileTypes: true })) {
    const src = path.join(root, entry.name);
    const dest = `/${entry.name}`;
    if (['dev', 'proc', 'tmp'].includes(entry.name)) continue;
    if (entry.isSymbolicLink()) args.push('--symlink', fs.readlinkSync(src), dest);
    else args.push('--ro-bind', src, dest);
  }
  args.push('--dev', '/dev', '--proc', '/proc', '--tmpfs', '/tmp');
  for (const p of [...opts.binds, opts.scratchDir]) args.push('--bind', p, p);
  args.push('--chdir', opts.scratchDir, '--unshare-pid', '--die-with-parent');
  return args;
}

export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
