/** Failure groups with the log tail of one representative token and the command that resets them. */
import type { PoolReader } from './reader.js';
import type { StatusFilter } from './filter.js';
import { failureGroups } from './failures.js';
import { logAttachments, logTail } from './tokens.js';
import { docPath } from './reader.js';
import type { FailureGroup, LogTail } from './types.js';

export interface FailureReportGroup extends FailureGroup {
  /** representative token and its newest log attachment's last lines; null when it has no log */
  log: (LogTail & { token: string }) | null;
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
      log: await representativeLog(reader, g.examples[0], opts.logLines ?? 10),
      reset: `tokenpool tokens reset --status error --obsid ${g.obsid} --step ${g.step}${opts.poolFlags ? ` ${opts.poolFlags}` : ''}`,
    })),
  );
  return { groups: withLogs, omitted };
}

async function representativeLog(reader: PoolReader, id: string | undefined, lines: number): Promise<FailureReportGroup['log']> {
  if (!id) return null;
  const doc = await reader.get<{ _attachments?: Record<string, unknown> }>(docPath(id));
  const name = logAttachments(doc)[0];
  if (!name) return null;
  return { token: id, ...(await logTail(reader, id, name, lines)) };
}
