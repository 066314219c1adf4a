/**
 * Every verb of the CLI, loaded on demand: a pilot running `tokenpool agent` must not pay the
 * start-up time and memory of the server, dashboard or submission code.
 */
import type { CommandModule } from 'yargs';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyCommand = CommandModule<any, any>;

export const commandLoaders: Record<string, () => Promise<AnyCommand>> = {
  db: async () => (await import('./db.js')).dbCommand,
  tokens: async () => (await import('./tokens/index.js')).tokensCommand,
  status: async () => (await import('./status.js')).statusCommand,
  failures: async () => (await import('./failures.js')).failuresCommand,
  dashboard: async () => (await import('./dashboard.js')).dashboardCommand,
  server: async () => (await import('./server.js')).serverCommand,
  agent: async () => (await import('./agent.js')).agentCommand,
  stage: async () => (await import('./stage.js')).stageCommand,
  submit: async () => (await import('./submit.js')).submitCommand,
  pilots: async () => (await import('./pilots.js')).pilotsCommand,
  pipeline: async () => (await import('./pipeline.js')).pipelineCommand,
};

/** The verb's own module when argv names one, else all of them (for the command list in --help). */
export async function loadCommands(argv: readonly string[]): Promise<AnyCommand[]> {
  const verb = argv.find((a) => !a.startsWith('-'));
  const names = verb !== undefined && verb in commandLoaders ? [verb] : Object.keys(commandLoaders);
  return Promise.all(names.map((n) => commandLoaders[n]!()));
}
