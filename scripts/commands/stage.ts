/** `tokenpool stage`: bring the inputs of tokens in status `staging` online from tape, then release them to `todo`. */
import type { Argv, CommandModule } from 'yargs';
import { InputError } from '../../server/errors.js';
import { createLogger } from '../../server/log.js';
import { parseDuration } from '../../agent/node/units.js';
import { LtaStager, ltaCredentials } from '../../agent/tape/lta-stager.js';
import { gfalBackend, ltaBackend, stageItBackend, stageRound, type GroupReport, type StagingBackend, type StagingMethod } from '../../agent/tape/stager.js';
import { StageIt, stageItAccount } from '../../agent/tape/stageit.js';
import { defaultMacaroonsFile } from '../../agent/node/credentials/macaroon-file.js';
import { printJson, printLine, table } from '../output.js';
import { poolFromArgs, withPoolOptions, type PoolArgs } from '../../server/pool-options.js';

interface StageArgs extends PoolArgs {
  json: boolean;
  logLevel: string;
  method?: StagingMethod;
  stageitUrl?: string;
  stageitTokenFile?: string;
  macaroons?: string;
  batchFiles: number;
  ltaUrl?: string;
  ltaCredentials?: string;
  watch: boolean;
  interval: string;
  deadline?: string;
  threshold?: number;
  pinLifetime: string;
}

export const stageCommand: CommandModule<object, StageArgs> = {
  command: 'stage',
  describe: 'Request the inputs of staging tokens online (StageIT, LTA stager or gfal bring-online); move tokens whose files are online to todo',
  builder: (y) =>
    withPoolOptions(y as Argv<object>)
      .option('method', { choices: ['stageit', 'lta', 'gfal'] as const, describe: 'Staging service: stageit (ASTRON StageIT; the default when a StageIT API token is configured), lta (old LTA stager, needs --lta-url) or gfal (gfal-bringonline)' })
      .option('stageit-url', { type: 'string', describe: `StageIT API base (default hostname= from ~/.stagingrc, else https://sdc.astron.nl/stageit/api/staging/)` })
      .option('stageit-token-file', { type: 'string', describe: 'A 0600 file with the StageIT API token (api_token=… as in ~/.stagingrc, or the bare token); default ~/.stagingrc, or TOKENPOOL_STAGEIT_TOKEN' })
      // Read from TOKENPOOL_STAGEIT_TOKEN only; declared so that one given as a flag is refused with a clear message.
      .option('stageit-token', { type: 'string', hidden: true })
      .option('macaroons', { type: 'string', describe: 'Where StageIT\'s per-site macaroons are kept for the agents (0600; default ~/.tokenpool/macaroons.json)' })
      .option('batch-files', { type: 'number', default: 1000, describe: 'Most files in one new staging request (per observation and site)' })
      .option('lta-url', { type: 'string', describe: 'LTA stager XML-RPC endpoint, e.g. https://webportal.astron.nl/service-public/xmlrpc (account: TOKENPOOL_LTA_USER/TOKENPOOL_LTA_PASSWORD)' })
      .option('lta-credentials', { type: 'string', describe: 'A 0600 file with the LTA account: JSON {"user","password"} or user=/password= lines' })
      // Read from TOKENPOOL_LTA_USER / TOKENPOOL_LTA_PASSWORD only; declared so that one given as a flag is refused with a clear message.
      .option('lta-user', { type: 'string', hidden: true })
      .option('lta-password', { type: 'string', hidden: true })
      .option('watch', { type: 'boolean', default: false, describe: 'Keep polling until no token is staging' })
      .option('interval', { type: 'string', default: '5m', describe: 'Time between polls with --watch' })
      .option('deadline', { type: 'string', describe: 'Give up on files not online this long after the request (e.g. 3d): their tokens become error "not staged"' })
      .option('threshold', { type: 'number', describe: 'Percent of a request online (e.g. 95) at which the files still offline are given up on' })
      .option('pin-lifetime', { type: 'string', default: '5d', describe: 'How long gfal bring-online asks the storage to keep files on disk' })
      .example('$0 stage --watch', 'StageIT with the token in ~/.stagingrc (api_token=…): request, follow, release tokens with WebDAV URLs')
      .example('$0 stage --method stageit --stageit-token-file ~/stageit.token --deadline 3d --batch-files 500', 'Batches of at most 500 files; give up on files not online after 3 days')
      .example('$0 stage --method lta --lta-url https://webportal.astron.nl/service-public/xmlrpc', 'The old LTA stager (account in TOKENPOOL_LTA_USER/TOKENPOOL_LTA_PASSWORD)')
      .example('$0 stage --method gfal --pin-lifetime 3d', 'gfal-bringonline (SRM, or WLCG Tape REST over https)') as unknown as Argv<StageArgs>,
  handler: async (args) => {
    const log = createLogger('stage', { level: args.logLevel });
    const backend = makeBackend(args);
    const deadlineS = args.deadline === undefined ? undefined : parseDuration(args.deadline, '--deadline');
    if (args.threshold !== undefined && !(args.threshold > 0 && args.threshold <= 100)) throw new InputError(`--threshold ${args.threshold}: give a percentage above 0 and at most 100`);
    const intervalS = parseDuration(args.interval, '--interval');
    const pool = poolFromArgs(args);
    const totals = { movedToTodo: 0, notStaged: 0 };
    let rounds = 0;
    for (;;) {
      rounds++;
      const reports = await stageRound({ pool, backend, deadlineS, thresholdPct: args.threshold, batchFiles: args.batchFiles, log });
      for (const r of reports) {
        totals.movedToTodo += r.movedToTodo;
        totals.notStaged += r.notStaged;
      }
      const waiting = reports.reduce((n, r) => n + r.waiting, 0);
      if (!args.json) printReports(reports);
      else if (args.watch) process.stdout.write(JSON.stringify({ round: rounds, observations: reports }) + '\n');
      if (!args.watch || waiting === 0) {
        if (args.json && !args.watch) printJson({ observations: reports, ...totals, waiting });
        else if (!args.json) printLine(`${totals.movedToTodo} token(s) moved to todo, ${totals.notStaged} marked "not staged", ${waiting} still staging`);
        return;
      }
      await new Promise((r) => setTimeout(r, intervalS * 1000));
    }
  },
};

function makeBackend(args: StageArgs): StagingBackend {
  if (process.argv.some((a) => /^--stageit-?token(=|$)/i.test(a))) {
    throw new InputError('the StageIT API token must not be given on the command line', 'Put it in ~/.stagingrc (api_token=…, mode 0600), in a 0600 file named by --stageit-token-file, or in TOKENPOOL_STAGEIT_TOKEN.');
  }
  if (!(args.batchFiles >= 1)) throw new InputError(`--batch-files ${args.batchFiles}: give at least 1`);
  const wantsStageIt = args.method === 'stageit' || (args.method === undefined && !args.ltaUrl);
  const account = wantsStageIt ? stageItAccount(args.stageitTokenFile, args.stageitUrl) : null;
  const method = args.method ?? (args.ltaUrl ? 'lta' : account ? 'stageit' : 'gfal');
  if (method === 'stageit') {
    if (!account) throw new InputError('--method stageit needs a StageIT API token', 'Put api_token=<token> in ~/.stagingrc (mode 0600), or use --stageit-token-file FILE or TOKENPOOL_STAGEIT_TOKEN.');
    return stageItBackend(new StageIt(account), args.macaroons ?? defaultMacaroonsFile());
  }
  if (method === 'gfal') return gfalBackend(parseDuration(args.pinLifetime, '--pin-lifetime'), process.env);
  if (process.argv.some((a) => /^--lta-?password/i.test(a))) {
    throw new InputError('the LTA password must not be given on the command line', 'Set TOKENPOOL_LTA_PASSWORD or use --lta-credentials FILE (0600).');
  }
  if (!args.ltaUrl) throw new InputError('--method lta needs --lta-url', 'e.g. --lta-url https://webportal.astron.nl/service-public/xmlrpc');
  if (/^[a-z]+:\/\/[^/]*@/i.test(args.ltaUrl)) {
    throw new InputError('--lta-url must not contain a user or password', 'Give the account in TOKENPOOL_LTA_USER/TOKENPOOL_LTA_PASSWORD or --lta-credentials FILE.');
  }
  return ltaBackend(new LtaStager(args.ltaUrl, ltaCredentials(args.ltaCredentials)));
}

function printReports(reports: GroupReport[]): void {
  if (reports.length === 0) {
    printLine('no tokens are staging');
    return;
  }
  printLine(
    table([
      ['OBSID', 'SITE', 'REQUEST', 'STATUS', 'ONLINE', 'PERCENT', 'TO TODO', 'NOT STAGED', 'WAITING'],
      ...reports.map((r) => [r.obsid ?? '-', r.site ?? '-', r.requestId ?? '-', r.status, `${r.online}/${r.files}`, `${r.percent} %`, r.movedToTodo, r.notStaged, r.waiting]),
    ]),
  );
}
