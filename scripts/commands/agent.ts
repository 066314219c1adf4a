/** `tokenpool agent`: the pilot agent on a worker node (agent/). */
import type { CommandModule } from 'yargs';
import { agentOptions, type AgentArgs } from '../../agent/options.js';
import { reportFailure } from '../output.js';

export const agentCommand: CommandModule<object, AgentArgs> = {
  command: 'agent',
  describe: 'Claim tokens and run their steps until there is no more work or time',
  builder: (y) => agentOptions(y),
  handler: async (args) => {
    let code: number;
    try {
      // Loaded here: `tokenpool --help` lists the command without loading the agent.
      const { runAgent } = await import('../../agent/index.js');
      code = await runAgent(args);
    } catch (err) {
      reportFailure(err);
      code = typeof process.exitCode === 'number' ? process.exitCode : 1;
    }
    // Open keep-alive sockets or a stray timer must not hold a stopping pilot past its grace period.
    process.exit(code);
  },
};
