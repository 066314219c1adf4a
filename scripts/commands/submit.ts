/** `tokenpool submit slurm|grid`: send pilots to a batch system (docs/submission.md). */
import type { Argv, CommandModule } from 'yargs';
import { submitSlurmCommand } from './submit-slurm.js';
import { submitGridCommand } from './submit-grid.js';

export const submitCommand: CommandModule = {
  command: 'submit',
  describe: 'Submit pilots (self-contained agents) to Slurm or the grid',
  builder: (y: Argv) =>
    y
      .command(submitSlurmCommand as CommandModule)
      .command(submitGridCommand as CommandModule)
      .demandCommand(1, 'Name a backend: submit slurm, or submit grid --backend dirac|glite')
      .epilog('Agent flags for the pilots go after "--", e.g. tokenpool submit slurm --count 4 -- --step cal1'),
  handler: () => {},
};
