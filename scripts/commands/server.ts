/** `tokenpool server`: the embedded CouchDB-compatible server (databases, admin account, dashboard) in one process. */
import path from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { startEmbeddedServer } from '../../server/embedded/index.js';
import { dashboardRoutes } from '../../server/dashboard/index.js';
import { createLogger } from '../../server/log.js';
import { InputError } from '../../server/errors.js';
import { printLine } from '../output.js';

interface ServerArgs {
  host: string;
  port: number;
  data: string;
  inMemory: boolean;
  json: boolean;
  logLevel: string;
}

export const serverCommand: CommandModule<object, ServerArgs> = {
  command: 'server',
  describe: 'Run the embedded CouchDB-compatible server (token pools and the dashboard) until SIGTERM or Ctrl-C',
  builder: (y: Argv) =>
    y
      .option('host', { type: 'string', default: '127.0.0.1', describe: 'Address to listen on' })
      .option('port', { type: 'number', default: 5984, describe: 'Port to listen on (0 picks a free one)' })
      .option('data', { type: 'string', default: './tokenpool-data', describe: 'Directory for databases and the admin credentials file' })
      .option('in-memory', { type: 'boolean', default: false, describe: 'Keep databases in memory only (lost when the server stops)' })
      .example('$0 server', 'Serve ./tokenpool-data on http://127.0.0.1:5984')
      .example('$0 server --port 0 --data /tmp/pool --json', 'Print {url, credentials_file, data_dir} once listening') as unknown as Argv<ServerArgs>,
  handler: async (args) => {
    if (!Number.isInteger(args.port) || args.port < 0 || args.port > 65535) {
      throw new InputError(`--port must be an integer from 0 to 65535, not ${String(args.port)}`);
    }
    const log = createLogger('server', { level: args.logLevel });
    const server = await startEmbeddedServer({
      host: args.host,
      port: args.port,
      dataDir: path.resolve(args.data),
      inMemory: args.inMemory,
      routes: dashboardRoutes(),
      log,
    });
    if (args.json) {
      process.stdout.write(JSON.stringify({ url: server.url, credentials_file: server.credentialsFile, data_dir: server.dataDir }) + '\n');
    } else {
      printLine(`tokenpool server listening on ${server.url}`);
      printLine(`admin credentials (${server.credentialsCreated ? 'created now' : 'kept'}): ${server.credentialsFile} (mode 0600; pass it as --credentials)`);
      printLine(`data: ${server.dataDir}${args.inMemory ? ' (databases in memory: lost at stop)' : ''}`);
      printLine('Stop with Ctrl-C or SIGTERM.');
    }
    await untilSignal();
    log.info('stopping: finishing requests in flight, closing the engine');
    // A second signal while stopping means "now".
    const force = () => process.exit(1);
    process.once('SIGINT', force);
    process.once('SIGTERM', force);
    await server.stop();
    log.info('stopped');
  },
};

function untilSignal(): Promise<void> {
  return new Promise((resolve) => {
    const on = () => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      resolve();
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}
