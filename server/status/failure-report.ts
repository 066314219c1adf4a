/** Failure groups with the log tail of one representative token and the command that resets them. */
import type { PoolReader } from './reader.js';
import { NO_OBSID, type StatusFilter } from './filter.js';
import { failureGroups } from './failures.js';
import { logAttachments, logTail } from './tokens.js';
import { docPath } from './reader.js';
import type { FailureGroup, LogTail } from './types.js';
import { redactText } from '../redact.js';

export interface FailureReportGroup extends FailureGroup {
  /** representative token and its newest non-empty log attachment's last lines; null when it has none */
  log: (LogTail & { token: string }) | null;
  /** the representative token's last error message (what the agent recorded, e.g. which URL failed) */
  lastError: string | null;
  reset: string;
}

export interface FailureReport {
  groups: FailureReportGroup[];
  omitted: number;
}

export async function failureReport(
  reader: PoolReader,
  filter: StatusFilter,
  opts: { logLines?: number; maxGroups?: number; poolFlags?: string } = {},
): Promise<FailureReport> {
  const { groups, omitted } = await failureGroups(reader, filter, { maxGroups: opts.maxGroups ?? 50 });
  const withLogs = await Promise.all(
    groups.map(async (g) => ({
      ...g,
      ...(await representative(reader, g.examples[0], opts.logLines ?? 10)),
      reset: g.picas
        ? `PiCaS-format tokens: reset them with your PiCaS scripts, or adopt them (tokenpool tokens adopt${opts.poolFlags ? ` ${opts.poolFlags}` : ''}) and use tokens reset`
        : `tokenpool tokens reset --status error ${g.obsid === NO_OBSID ? '' : `--obsid ${g.obsid} `}--step ${g.step}${opts.poolFlags ? ` ${opts.poolFlags}` : ''}`,
    })),
  );
  return { groups: withLogs, omitted };
}

type AttachmentStub = { length?: number };

async function representative(reader: PoolReader, id: string | undefined, lines: number): Promise<Pick<FailureReportGroup, 'log' | 'lastError'>> {
  if (!id) return { log: null, lastError: null };
  const doc = await reader.get<{ _attachments?: Record<string, AttachmentStub>; error?: { message?: string }[] }>(docPath(id));
  const lastError = doc.error?.at(-1)?.message ?? null;
  // A step that failed before it ran (stage-in, proxy) leaves empty logs: show one that says something.
  const name = logAttachments(doc).find((n) => (doc._attachments?.[n]?.length ?? 0) > 0);
  return { lastError: lastError === null ? null : redactText(lastError), log: name ? { token: id, ...(await logTail(reader, id, name, lines)) } : null };
}
