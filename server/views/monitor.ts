/**
 * PiCaS's `Monitor` design document, so that PiCaS clients and habits keep working on a tokenpool
 * database. Same view names, keys, values and state rules as picasclient's create_views: the state
 * views emit (_id, _id); overview_total emits (state, 1) summed. Loose equality and parseInt on
 * purpose: PiCaS tokens written by other tools may carry numbers as strings.
 *
 * One difference: `todo` (what stock PiCaS workers take) holds a tokenpool token only while it is
 * claimable (status todo), so that PiCaS workers never run a token whose inputs are on tape (staging)
 * or that is held back (waiting). PiCaS-format tokens follow PiCaS's rule unchanged.
 */
import { TOKENPOOL_FIELDS } from '../token.js';
import type { ViewDef } from './types.js';

const IS_PICAS_FORMAT = TOKENPOOL_FIELDS.map((f) => `doc.${f} === undefined`).join(' && ');
const IS_TODO = `doc.lock == 0 && doc.done == 0 && (doc.status === 'todo' || (${IS_PICAS_FORMAT}))`;
const IS_LOCKED = 'doc.lock > 0 && doc.done == 0';
const IS_DONE = 'doc.lock > 0 && doc.done > 0 && parseInt(doc.exit_code, 10) == 0';
const IS_ERROR = 'doc.lock > 0 && doc.done > 0 && parseInt(doc.exit_code, 10) != 0';

function stateView(condition: string): ViewDef {
  return {
    map: `function (doc) {
  if (doc.type == 'token' && ${condition}) emit(doc._id, doc._id);
}`,
  };
}

export const monitorViews: Record<string, ViewDef> = {
  todo: stateView(IS_TODO),
  locked: stateView(IS_LOCKED),
  done: stateView(IS_DONE),
  error: stateView(IS_ERROR),
  // group=true answers {todo: n, locked: n, done: n, error: n} in one query.
  overview_total: {
    map: `function (doc) {
  if (doc.type != 'token') return;
  if (${IS_TODO}) emit('todo', 1);
  if (${IS_LOCKED}) emit('locked', 1);
  if (${IS_DONE}) emit('done', 1);
  if (${IS_ERROR}) emit('error', 1);
}`,
    reduce: '_sum',
  },
};
