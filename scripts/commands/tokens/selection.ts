/** The selection flags shared by list, reset and delete: --status, --obsid, --step, --older-than, ids, --all. */
import type { Argv } from 'yargs';
import { InputError } from '../../../server/errors.js';
import { TOKEN_STATUSES } from '../../../server/token.js';
import { checkSelectionValues, isEmptySelection, parseDuration, parseStatus, type Selection } from '../../../server/tokens/select.js';

export interface SelectionArgs {
  ids?: string[];
  status?: string;
  obsid?: string;
  step?: string;
  'older-than'?: string;
  all?: boolean;
}

export function withSelectionOptions<T>(y: Argv<T>, opts: { all: boolean }): Argv<T & SelectionArgs> {
  let out = y
    .option('status', { type: 'string', choices: [...TOKEN_STATUSES], describe: 'Only tokens in this status' })
    .option('obsid', { type: 'string', describe: 'Only this observation, e.g. L229507' })
    .option('step', { type: 'string', describe: 'Only this pipeline step' })
    .option('older-than', { type: 'string', describe: 'Only tokens not updated for this long: 90s, 30m, 2h, 3d' });
  if (opts.all) out = out.option('all', { type: 'boolean', default: false, describe: 'Select every token (when no other selection is given)' });
  return out as unknown as Argv<T & SelectionArgs>;
}

export function selectionFromArgs(args: SelectionArgs, opts: { requireSome: boolean }): Selection {
  const sel: Selection = {
    ids: args.ids?.map(String).filter(Boolean),
    status: parseStatus(args.status),
    obsid: args.obsid,
    step: args.step,
    olderThan: args['older-than'] !== undefined ? parseDuration(args['older-than'], '--older-than') : undefined,
  };
  checkSelectionValues(sel);
  if (opts.requireSome && isEmptySelection(sel) && !args.all) {
    throw new InputError('no tokens selected', 'Name token ids, or select with --status, --obsid, --step, --older-than (or --all for every token).');
  }
  if (sel.ids?.length && args.all) throw new InputError('give token ids or --all, not both');
  return sel;
}
