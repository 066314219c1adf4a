/** Every verb of the CLI; each module exports one yargs command. */
import type { CommandModule } from 'yargs';
import { statusCommand } from './status.js';
import { dbCommand } from './db.js';
import { tokensCommand } from './tokens/index.js';
import { failuresCommand } from './failures.js';
import { dashboardCommand } from './dashboard.js';
import { serverCommand } from './server.js';
import { agentCommand } from './agent.js';
import { stageCommand } from './stage.js';
import { submitCommand } from './submit.js';
import { pilotsCommand } from './pilots.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const commands: CommandModule<any, any>[] = [dbCommand, tokensCommand, statusCommand, failuresCommand, dashboardCommand, serverCommand, agentCommand, stageCommand, submitCommand, pilotsCommand];
