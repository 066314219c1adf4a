/** `tokenpool tokens show ID`: one token's fields, inputs, attachments and attempt history. */
import type { Argv, CommandModule } from 'yargs';
import { poolFromArgs, withPoolOptions, type PoolArgs } from '../../../server/pool-options.js';
import { printJson, printLine, table } from '../../output.js';
import { attachmentsOf, getToken } from '../../../server/tokens/show.js';
import { inputFilesOf, isPicasToken, type Token } from '../../../server/token.js';
import { effectiveStatus, lastChange, movedByPicas } from '../../../server/effective-status.js';
import { formatBytes, formatSeconds, formatTime } from './format.js';

interface ShowArgs extends PoolArgs {
  id: string;
  json: boolean;
}

const SCALARS = ['status', 'obsid', 'step', 'site', 'lock', 'done', 'exit_code', 'hostname', 'reason', 'attempts', 'max_attempts', 'scrub_count', 'priority', 'command', 'image', 'results', 'overwrite'] as const;

export const showCommand: CommandModule<object, ShowArgs> = {
  command: 'show <id>',
  describe: 'Show one token: fields, inputs, attachments with sizes, attempt history',
  builder: (y: Argv) => withPoolOptions(y).positional('id', { type: 'string', demandOption: true, describe: 'Token id' }) as unknown as Argv<ShowArgs>,
  handler: async (args) => {
    // A PiCaS-format token lacks tokenpool's fields: shown with what it has.
    const t = (await getToken(poolFromArgs(args), args.id)) as Partial<Token> & Pick<Token, '_id' | 'lock' | 'done' | 'exit_code'>;
    const attachments = attachmentsOf(t);
    if (args.json) return printJson({ ...t, _attachments: undefined, attachments, effective_status: effectiveStatus(t) });
    printLine(`token ${t._id}`);
    const rows: (string | number)[][] = SCALARS.map((k) => [k, display(t[k])]);
    // A PiCaS worker moves lock/done/exit_code only: its state is the token's, the stale field is shown as such.
    if (movedByPicas(t)) rows[0] = ['status', `${effectiveStatus(t)} (set by a PiCaS worker; status field: ${display(t.status)})`];
    rows.push(['subbands', t.subbands?.join(', ') || '-']);
    rows.push(['requirements', JSON.stringify(t.requirements ?? {})]);
    rows.push(['lease', t.lease ? `${t.lease.owner} until ${formatTime(t.lease.expires)} (heartbeat ${formatTime(t.lease.heartbeat)})` : '-']);
    rows.push(['created', formatTime(t.created ?? null)], ['updated', formatTime(lastChange(t))]);
    for (const [status, time] of Object.entries(t.times ?? {})) if (typeof time === 'number') rows.push([`times.${status}`, formatTime(time)]);
    printLine(table(rows));
    const files = inputFilesOf(t);
    if (typeof t.input === 'string') section('input', `PiCaS input line (the step gets it as $TOKEN_INPUT): ${t.input}`);
    else if (isPicasToken(t)) section('input', JSON.stringify(t.input ?? null));
    else section('input', files.length ? table([['url', 'size', 'adler32'], ...files.map((f) => [f.url, f.size ?? '-', f.adler32 ?? '-'])]) : 'none');
    if (Array.isArray(t.output) && t.output.length) section('output', table([['url', 'size', 'adler32'], ...t.output.map((f) => [f.url, f.size, f.adler32])]));
    section('attachments', attachments.length ? table([['name', 'type', 'size'], ...attachments.map((a) => [a.name, a.content_type, formatBytes(a.length)])]) : 'none');
    section(
      'history',
      t.history?.length
        ? table([
            ['#', 'start', 'end', 'host', 'job', 'exit', 'reason', 'duration'],
            ...t.history.map((a) => [a.attempt, formatTime(a.start), formatTime(a.end), a.hostname, a.batch_job_id ?? '-', a.exit_code ?? '-', a.reason, formatSeconds(a.end ? a.end - a.start : null)]),
          ])
        : 'no attempts yet',
    );
    if (Array.isArray(t.error) && t.error.length) section('errors', table([['time', 'message'], ...t.error.map((e) => [formatTime(e.time), e.message ?? ''])]));
  },
};

function display(v: unknown): string {
  if (v === null || v === undefined || v === '') return '-';
  return String(v);
}

function section(title: string, body: string): void {
  printLine(`\n${title}:`);
  printLine(body.split('\n').map((l) => `  ${l}`).join('\n'));
}
