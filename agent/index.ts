/**
 * The pilot agent: `runAgent(args)` claims, leases, runs and reports tokens until there is no more
 * work, time or permission; `agentOptions(y)` declares its flags. Both are usable without the rest of
 * the CLI (the self-contained pilot bundle imports only this module).
 */
import path from 'node:path';
import { openPool } from '../server/client.js';
import { checkDbTimeout } from '../server/pool-options.js';
import { createLogger } from '../server/log.js';
import { TokenpoolError } from '../server/errors.js';
import { Agent, AGENT_EXIT, connect } from './agent.js';
import { batchEndTime } from './batch.js';
import { nodeCores } from './host.js';
import { createWorkerNode } from './node/index.js';
import { parseSize } from './node/units.js';
import { checkAgentArgs, type AgentArgs } from './options.js';
import { applyAgentV8Settings } from './v8-settings.js';

export { agentOptions, type AgentArgs } from './options.js';
export { AGENT_EXIT } from './agent.js';

/** Runs an agent to the end; resolves with the process exit code (docs/agent.md). */
export async function runAgent(args: AgentArgs): Promise<number> {
  applyAgentV8Settings();
  const log = createLogger('agent', { level: args.logLevel });
  const { slots, selector } = checkAgentArgs(args);
  const pool = openPool({ db: args.db, credentials: args.credentials, user: process.env.TOKENPOOL_USER, password: process.env.TOKENPOOL_PASSWORD, dbTimeoutS: checkDbTimeout(args.dbTimeout) });
  const node = createWorkerNode(args, log);
  const startedMs = Date.now();
  let deadlineMs: number | undefined;
  if (args.maxTime !== undefined) deadlineMs = startedMs + args.maxTime * 1000;
  else {
    const end = await batchEndTime();
    if (end !== null) {
      deadlineMs = end * 1000;
      log.info({ ends: new Date(deadlineMs).toISOString() }, 'time budget from the batch system');
    }
  }
  const copies = await connect(pool, args.fence, args.fenceSettle, log);
  const cores = slots.kind === 'auto' ? nodeCores() : 0;

  const agent = new Agent({
    pool,
    node,
    log,
    source: { step: args.step, obsid: args.obsid, view: args.view, selector },
    slots,
    cores,
    maxTokens: args.maxTokens,
    deadlineMs,
    idleExitS: args.idleExit,
    workdir: path.resolve(args.workdir),
    command: args.command,
    leaseS: args.lease,
    graceS: args.grace,
    jitterS: args.jitter,
    pollS: args.poll,
    window: args.window,
    copies,
    keepScratch: args.keepScratch,
    cgroups: args.stepCgroup,
    minFreeBytes: parseSize(args.minFree, '--min-free'),
  });
  const onSignal = (sig: NodeJS.Signals) => agent.stop(`received ${sig}`);
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    await node.preflight().catch((err: unknown) => {
      if (err instanceof TokenpoolError) throw new TokenpoolError(`this node cannot run work: ${err.message}`, err.hint, AGENT_EXIT.preflight);
      throw err;
    });
    return await agent.run();
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
}
