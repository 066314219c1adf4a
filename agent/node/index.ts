/** The worker node as the agent sees it: built from the agent's flags (see agent/phases.ts). */
import os from 'node:os';
import path from 'node:path';
import type { Argv } from 'yargs';
import type { Logger } from '../../server/log.js';
import type { WorkerNode } from '../phases.js';
import { defaultMacaroonsFile } from './credentials/macaroon-file.js';
import { RUNTIMES, type RuntimeChoice } from './runtime.js';
import type { TransferTool } from './transfer/index.js';
import { parseDuration, parseSize } from './units.js';
import { GridWorkerNode, type ProxyRequirement } from './worker-node.js';

export interface WorkerNodeArgs {
  image?: string;
  runtime?: RuntimeChoice;
  cvmfsRoot?: string;
  cvmfsTimeout?: string;
  initScript?: string;
  bind?: string[];
  imageCache?: string;
  imageCacheSize?: string;
  requireProxy?: ProxyRequirement;
  minProxyLifetime?: string;
  results?: string;
  resultsBase?: string;
  resultsGzip?: boolean;
  localResults?: string;
  transferTool?: TransferTool;
  transferTimeout?: string;
  transferRetries?: number;
  retryDelay?: string;
  parallelTransfers?: number;
  macaroons?: string;
  tokenRefreshCommand?: string;
  minCredentialLifetime?: string;
  credentialWait?: string;
  resultsAuth?: 'macaroon' | 'bearer';
  /** The agent's work directory (the agent's own flag), the default home of --local-results */
  workdir?: string;
}

const GROUP = 'Worker node:';

/** Flags of `tokenpool agent` that describe the node: image, runtime, proxy, transfers. */
export function workerNodeOptions<T>(y: Argv<T>): Argv<T & WorkerNodeArgs> {
  return y
    .option('image', { type: 'string', group: GROUP, describe: 'Software image (.sif or unpacked directory, usually on /cvmfs) for tokens that name none' })
    .option('runtime', { choices: RUNTIMES, default: 'auto' as RuntimeChoice, group: GROUP, describe: 'How to run the step in the image: auto picks apptainer, singularity, then bwrap (directories); none runs natively; podman runs CWL steps (cwltool --podman)' })
    .option('cvmfs-root', { type: 'string', group: GROUP, describe: 'Where /cvmfs is mounted on this node (image paths starting /cvmfs/ are looked up under it)' })
    .option('cvmfs-timeout', { type: 'string', default: '30s', group: GROUP, describe: 'Give up looking at CVMFS after this long (autofs can hang)' })
    .option('init-script', { type: 'string', group: GROUP, describe: 'With --runtime none: a script in the image directory to source before the step (e.g. init.sh)' })
    .option('bind', { type: 'string', array: true, group: GROUP, describe: 'Extra host paths visible inside the container at the same path' })
    .option('image-cache', { type: 'string', group: GROUP, describe: 'Node-local image cache directory shared by the agents on this node' })
    .option('image-cache-size', { type: 'string', default: '20G', group: GROUP, describe: 'Evict least recently used images beyond this size' })
    .option('require-proxy', { choices: ['auto', 'yes', 'no'] as const, default: 'auto' as ProxyRequirement, group: GROUP, describe: 'Need a grid proxy? auto: when inputs or results use srm, gsiftp, root or davs' })
    .option('min-proxy-lifetime', { type: 'string', group: GROUP, describe: 'Refuse work when the proxy lives less than this (default 1h, or the token\'s time limit)' })
    .option('results', { type: 'string', group: GROUP, describe: 'Results location for tokens without one, e.g. ${RESULTS}/${OBSID}/${STEP}/${TOKEN_ID}.tar' })
    .option('results-base', { type: 'string', group: GROUP, describe: 'Value of ${RESULTS} in results templates, e.g. davs://webdav.example.org/lofar/user/results' })
    .option('results-gzip', { type: 'boolean', default: false, group: GROUP, describe: 'gzip the results tar (".gz" is appended to a name ending in .tar)' })
    .option('local-results', { type: 'string', group: GROUP, describe: 'Where outputs are kept when a token has no results location (default <workdir>/results)' })
    .option('transfer-tool', { choices: ['auto', 'builtin', 'gfal'] as const, default: 'auto' as TransferTool, group: GROUP, describe: 'auto: built-in client for file/http(s)/dav(s), gfal-copy for srm/gsiftp/root' })
    .option('transfer-timeout', { type: 'string', default: '1h', group: GROUP, describe: 'Per-file time limit for one transfer attempt' })
    .option('transfer-retries', { type: 'number', default: 3, group: GROUP, describe: 'Retries of a failed transfer (not for 404, denied or checksum mismatch)' })
    .option('retry-delay', { type: 'string', default: '5s', group: GROUP, describe: 'First retry delay; doubles with each retry' })
    .option('parallel-transfers', { type: 'number', default: 2, group: GROUP, describe: 'Input files fetched at the same time' })
    .option('macaroons', { type: 'string', group: GROUP, describe: 'Macaroons file (0600) as tokenpool stage --method stageit writes it (default ~/.tokenpool/macaroons.json)' })
    .option('token-refresh-command', { type: 'string', group: GROUP, describe: 'Command printing a fresh WLCG bearer token when the one found expires too soon, e.g. "oidc-token lofar" (run without a shell)' })
    .option('min-credential-lifetime', { type: 'string', default: '10m', group: GROUP, describe: 'Refresh a macaroon or bearer token that lives less than this when a transfer starts' })
    .option('results-auth', { choices: ['macaroon', 'bearer'] as const, group: GROUP, describe: 'The credential the --results storage takes: without one that lives --min-credential-lifetime, refuse to claim work' })
    .option('credential-wait', { type: 'string', default: '2m', group: GROUP, describe: 'Without a refresh command: how long to wait for a refresher to rewrite the credential file' }) as unknown as Argv<T & WorkerNodeArgs>;
}

export function createWorkerNode(args: WorkerNodeArgs, log: Logger): WorkerNode {
  return new GridWorkerNode(
    {
      image: args.image || undefined,
      runtime: args.runtime ?? 'auto',
      cvmfsRoot: args.cvmfsRoot || undefined,
      cvmfsTimeoutS: parseDuration(args.cvmfsTimeout ?? '30s', '--cvmfs-timeout'),
      initScript: args.initScript || undefined,
      binds: args.bind ?? [],
      imageCache: args.imageCache || undefined,
      imageCacheBytes: parseSize(args.imageCacheSize ?? '20G', '--image-cache-size'),
      requireProxy: args.requireProxy ?? 'auto',
      minProxyLifetimeS: args.minProxyLifetime === undefined ? undefined : parseDuration(args.minProxyLifetime, '--min-proxy-lifetime'),
      results: args.results || undefined,
      resultsBase: args.resultsBase || undefined,
      resultsGzip: args.resultsGzip ?? false,
      localResults: path.resolve(args.localResults ?? path.join(args.workdir ?? path.join(os.tmpdir(), 'tokenpool'), 'results')),
      transferTool: args.transferTool ?? 'auto',
      transferTimeoutS: parseDuration(args.transferTimeout ?? '1h', '--transfer-timeout'),
      transferRetries: Math.max(0, Math.floor(args.transferRetries ?? 3)),
      retryDelayS: parseDuration(args.retryDelay ?? '5s', '--retry-delay'),
      parallelTransfers: Math.max(1, Math.floor(args.parallelTransfers ?? 2)),
      macaroonsFile: path.resolve(args.macaroons ?? defaultMacaroonsFile()),
      tokenRefreshCommand: args.tokenRefreshCommand?.trim() ? args.tokenRefreshCommand.trim().split(/\s+/) : undefined,
      minCredentialLifetimeS: parseDuration(args.minCredentialLifetime ?? '10m', '--min-credential-lifetime'),
      credentialWaitS: parseDuration(args.credentialWait ?? '2m', '--credential-wait'),
      resultsAuth: args.resultsAuth,
      env: process.env,
    },
    log,
  );
}
