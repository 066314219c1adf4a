/** The flags of `tokenpool agent`, shared with the self-contained pilot bundle. */
import { SETTLE_MS } from '../server/branches.js';
import type { Argv } from 'yargs';
import { withPoolOptions, type PoolArgs } from '../server/pool-options.js';
import { workerNodeOptions, type WorkerNodeArgs } from './node/index.js';
import { InputError } from '../server/errors.js';

export interface AgentArgs extends PoolArgs, WorkerNodeArgs {
  step?: string;
  obsid?: string;
  view?: string;
  selector?: string;
  slots: string;
  maxTokens?: number;
  maxTime?: number;
  idleExit?: number;
  workdir: string;
  command?: string;
  lease: number;
  grace: number;
  jitter: number;
  poll: number;
  window: number;
  fence: 'auto' | 'always' | 'never';
  fenceSettle: number;
  keepScratch: boolean;
  stepCgroup: boolean;
  minFree: string;
  logLevel?: string;
}

export function agentOptions<T>(y: Argv<T>): Argv<T & AgentArgs> {
  const withPool = withPoolOptions(y);
  return workerNodeOptions(withPool)
    .option('step', { type: 'string', describe: 'Take only tokens of this pipeline step' })
    .option('obsid', { type: 'string', describe: 'Take only tokens of this observation (e.g. L229507)' })
    .option('view', { type: 'string', describe: 'Take tokens from this view ("design/view", e.g. Monitor/todo) instead of tokenpool/claimable' })
    .option('selector', { type: 'string', describe: 'Take only tokens matching this Mango selector (JSON), e.g. \'{"site":"sara"}\'' })
    .option('slots', { type: 'string', default: '1', describe: 'Tokens run at once: a number, or "auto" (node cores shared by each token\'s requirements.cores)' })
    .option('max-tokens', { type: 'number', describe: 'Exit after claiming this many tokens' })
    .option('max-time', { type: 'number', describe: 'Wall-clock budget in seconds (default: the batch job\'s end time when it can be read)' })
    .option('idle-exit', { type: 'number', describe: 'Exit when nothing was claimable for this many seconds' })
    .option('workdir', { type: 'string', default: '.', describe: 'Scratch directories and the local journal live here' })
    .option('command', { type: 'string', describe: 'Shell command for tokens that carry none' })
    .option('lease', { type: 'number', default: 300, describe: 'Lease length in seconds; the agent renews it every third' })
    .option('grace', { type: 'number', default: 30, describe: 'Seconds between TERM and KILL when stopping a step' })
    .option('jitter', { type: 'number', default: 5, describe: 'Random delay before the first claim, at most this many seconds' })
    .option('poll', { type: 'number', default: 10, describe: 'Seconds between looks for work when none is claimable' })
    .option('window', { type: 'number', default: 20, describe: 'Claimable rows read per query (at a random offset among the first 500); the agent tries them in random order' })
    .option('fence', {
      type: 'string',
      choices: ['auto', 'always', 'never'] as const,
      default: 'auto' as const,
      describe: 'Check each claim on every copy of the token before its step starts, and write outcomes only on the owning branch (auto: when the database keeps more than one copy, n > 1)',
    })
    .option('fence-settle', { type: 'number', default: SETTLE_MS / 1000, describe: 'Seconds a claim is given to reach every copy before the fence reads them all' })
    .option('keep-scratch', { type: 'boolean', default: false, describe: 'Keep each token\'s scratch directory after the attempt' })
    .option('step-cgroup', {
      type: 'boolean',
      default: true,
      describe: 'Contain each step in a cgroup v2 of its own where this node lets the agent create one (--no-step-cgroup: its process group and the /proc search for its marker only)',
    })
    .option('min-free', { type: 'string', default: '1G', describe: 'Free space the work directory needs before a claim (e.g. 500M, 20G); less is a node problem: the agent stops, exit 4' }) as unknown as Argv<
    T & AgentArgs
  >;
}

export type Slots = { kind: 'fixed'; count: number } | { kind: 'auto' };

/** Checks flag values; throws InputError naming the flag. */
export function checkAgentArgs(a: AgentArgs): { slots: Slots; selector?: Record<string, unknown> } {
  const positive = (name: string, v: number | undefined, allowZero = false) => {
    if (v === undefined) return;
    if (!Number.isFinite(v) || v < 0 || (!allowZero && v === 0)) throw new InputError(`--${name} must be a ${allowZero ? 'non-negative' : 'positive'} number, got ${v}`);
  };
  positive('max-tokens', a.maxTokens);
  positive('max-time', a.maxTime);
  positive('idle-exit', a.idleExit, true);
  positive('lease', a.lease);
  positive('grace', a.grace, true);
  positive('jitter', a.jitter, true);
  positive('poll', a.poll);
  positive('window', a.window);
  if (a.lease < 3) throw new InputError(`--lease must be at least 3 seconds (the heartbeat runs every third), got ${a.lease}`);
  if (a.view && a.selector) throw new InputError('give either --view or --selector, not both');
  if (a.view && !/^(?:_design\/)?[^/]+\/(?:_view\/)?[^/]+$/.test(a.view)) {
    throw new InputError(`--view must name "design/view", e.g. Monitor/todo; got ${a.view}`);
  }
  let slots: Slots;
  if (a.slots === 'auto') slots = { kind: 'auto' };
  else {
    const n = Number(a.slots);
    if (!Number.isInteger(n) || n < 1) throw new InputError(`--slots must be a positive whole number or "auto", got ${a.slots}`);
    slots = { kind: 'fixed', count: n };
  }
  let selector: Record<string, unknown> | undefined;
  if (a.selector) {
    try {
      selector = JSON.parse(a.selector) as Record<string, unknown>;
    } catch (err) {
      throw new InputError(`--selector is not valid JSON: ${(err as Error).message}`, 'Example: --selector \'{"site": "sara"}\'');
    }
    if (!selector || typeof selector !== 'object' || Array.isArray(selector)) throw new InputError('--selector must be a JSON object (a Mango selector)');
  }
  return { slots, selector };
}
