/** `tokenpool dashboard`: the web dashboard for a pool on a remote CouchDB, read with a viewer account. */
import type { Argv, CommandModule } from 'yargs';
import { poolFromArgs, withPoolOptions, type PoolArgs } from '../../server/pool-options.js';
import { printJson, printLine } from '../output.js';
import { InputError } from '../../server/errors.js';
import { startRemoteDashboard } from '../../server/dashboard/index.js';
import { readerFromPool } from '../../server/status/reader.js';

interface DashboardArgs extends PoolArgs {
  host: string;
  port: number;
  json: boolean;
}

export const dashboardCommand: CommandModule<object, DashboardArgs> = {
  command: 'dashboard',
  describe: 'Serve the web dashboard of a pool on a (remote) CouchDB; the browser never sees the credentials',
  builder: (y: Argv) =>
    withPoolOptions(y)
      .option('host', { type: 'string', default: '127.0.0.1', describe: 'Address to serve the page on' })
      .option('port', { type: 'number', default: 8080, describe: 'Port to serve the page on (0 picks a free one)' })
      .example('$0 dashboard --db https://couch.example.org/lofar --credentials viewer.json', 'Open http://127.0.0.1:8080/ in a browser') as unknown as Argv<DashboardArgs>,
  handler: async (args) => {
    if (!Number.isInteger(args.port) || args.port < 0 || args.port > 65535) {
      throw new InputError(`--port must be an integer from 0 to 65535, not ${String(args.port)}`);
    }
    const pool = poolFromArgs(args);
    // Fail now, not in the browser, when the database or the account is wrong.
    await readerFromPool(pool).get('');
    const dashboard = await startRemoteDashboard(pool, { host: args.host, port: args.port });
    if (args.json) printJson({ url: dashboard.url, db: pool.displayUrl });
    else printLine(`Dashboard for ${pool.displayUrl}: ${dashboard.url}\nStop with Ctrl-C.`);
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    await dashboard.close();
  },
};
