/** The design documents' validate function agrees with validateToken (token.ts) on good and broken tokens. */
import { test } from 'vitest';
import assert from 'node:assert/strict';
import { validateDocUpdate } from '../server/security.js';
import { designDocs, guardDesignDoc, mergeViews } from '../server/design.js';
import { newToken, validateToken, type Token } from '../server/token.js';

type Validate = (newDoc: unknown, oldDoc: unknown, userCtx: unknown, secObj?: unknown) => void;
// eslint-disable-next-line @typescript-eslint/no-implied-eval
const validate = new Function(`return (${validateDocUpdate});`)() as Validate;
const manager = { name: 'm', roles: ['tokenpool_manager'] };

function verdict(doc: unknown): string | null {
  try {
    validate(doc, null, manager);
    return null;
  } catch (e) {
    return (e as { forbidden: string }).forbidden;
  }
}

const good = (): Token => ({
  ...newToken({ obsid: 'L229507', step: 'cal1', subbands: [100, 101], input: [{ url: 'srm://x/L229507_SB100_uv.MS_00000000.tar', adler32: '0a1b2c3d', size: 10 }], requirements: { cores: 4 } }),
  lease: { owner: 'p', claim_id: 'c', expires: 10, heartbeat: 5 },
  history: [{ attempt: 1, claim_id: 'c', owner: 'p', hostname: 'h', batch_job_id: null, start: 1, end: null, exit_code: null, reason: 'running', phases: { running: 3.5 } }],
  output: [{ url: 'file:///r.tar', size: 3, adler32: '00000001' }],
  error: [{ time: 3, message: 'x' }],
});

const broken: [string, (t: Record<string, unknown>) => void][] = [
  ['lock', (t) => (t.lock = '0')],
  ['done', (t) => (t.done = -1)],
  ['lock', (t) => (t.lock = 1.5)],
  ['hostname', (t) => delete t.hostname],
  ['scrub_count', (t) => (t.scrub_count = null)],
  ['exit_code', (t) => (t.exit_code = '0')],
  ['exit_code', (t) => delete t.exit_code],
  // A string is PiCaS's input line (adopted tokens); an object is no input.
  ['input', (t) => (t.input = { url: 'srm://x' })],
  ['input.0.url', (t) => (t.input = [{ url: '' }])],
  ['input.0.adler32', (t) => (t.input = [{ url: 'u', adler32: 'XYZ' }])],
  ['output.0.size', (t) => (t.output = [{ url: 'u', adler32: '00000000' }])],
  ['error.0.message', (t) => (t.error = [{ time: 1 }])],
  ['status', (t) => (t.status = 'queued')],
  ['obsid', (t) => (t.obsid = '229507')],
  ['obsid', (t) => delete t.obsid],
  ['step', (t) => (t.step = 'a b')],
  ['subbands', (t) => (t.subbands = 100)],
  ['subbands.0', (t) => (t.subbands = [-1])],
  ['site', (t) => (t.site = 'astron')],
  ['command', (t) => (t.command = 3)],
  ['image', (t) => delete t.image],
  ['results', (t) => (t.results = false)],
  ['overwrite', (t) => (t.overwrite = 'yes')],
  ['priority', (t) => (t.priority = 0.5)],
  ['requirements', (t) => (t.requirements = null)],
  ['requirements.cores', (t) => (t.requirements = { cores: 0 })],
  ['attempts', (t) => (t.attempts = -1)],
  ['max_attempts', (t) => (t.max_attempts = 0)],
  ['lease', (t) => (t.lease = 'p')],
  ['lease.expires', (t) => (t.lease = { owner: 'p', claim_id: 'c', heartbeat: 1 })],
  ['history', (t) => (t.history = {})],
  ['history.0.attempt', (t) => (t.history = [{ ...(t.history as object[])[0], attempt: 0 }])],
  ['history.0.phases.running', (t) => (t.history = [{ ...(t.history as object[])[0], phases: { running: -1 } }])],
  ['reason', (t) => (t.reason = 1)],
  ['times.queued', (t) => (t.times = { queued: 1 })],
  ['times.todo', (t) => (t.times = { todo: 'now' })],
  ['created', (t) => delete t.created],
  ['updated', (t) => (t.updated = '2024')],
];

test('a token from newToken passes both checks; extra fields are kept, not refused', () => {
  const t = { ...good(), slurm_job_id: '123_4', anything: { nested: true } };
  assert.ok(validateToken(t).ok);
  assert.equal(verdict(t), null);
});

for (const [field, breakIt] of broken) {
  test(`a token with a broken ${field} is refused by both, naming ${field}`, () => {
    const t = good() as unknown as Record<string, unknown>;
    breakIt(t);
    const zod = validateToken(t);
    assert.ok(!zod.ok, 'validateToken refuses it');
    const message = verdict(t);
    assert.ok(message, 'validate_doc_update refuses it');
    assert.ok(message.startsWith(`invalid token L229507_cal1_SB100-101: ${field} `), message);
  });
}

test('roles: viewers and unknown users cannot write, agents cannot delete tokens, managers can', () => {
  const t = good();
  const deletion = { _id: t._id, _rev: '1-a', _deleted: true };
  assert.match(String(catchIt(() => validate(t, null, { name: 'v', roles: ['tokenpool_viewer'] }))), /lacks the role/);
  assert.match(String(catchIt(() => validate(t, null, { name: 'x', roles: [] }))), /lacks the role/);
  assert.equal(catchIt(() => validate(t, null, { name: 'a', roles: ['tokenpool_agent'] })), null);
  assert.match(String(catchIt(() => validate(deletion, t, { name: 'a', roles: ['tokenpool_agent'] }))), /only a tokenpool_manager may delete tokens/);
  assert.equal(catchIt(() => validate(deletion, t, manager)), null);
  assert.equal(catchIt(() => validate(deletion, t, { name: 'admin', roles: ['_admin'] })), null);
  assert.match(String(catchIt(() => validate({ _id: t._id, type: 'note' }, t, manager))), /type must stay "token"/);
  assert.equal(catchIt(() => validate({ _id: 'sub-1', type: 'submission' }, null, { name: 'a', roles: ['tokenpool_agent'] })), null);
});

test('roles from _security: names and member roles count (PiCaS pools list accounts by name), the viewer role never writes', () => {
  const t = good();
  const deletion = { _id: t._id, _rev: '1-a', _deleted: true };
  const sec = { admins: { names: ['boss'], roles: ['lofar_admin'] }, members: { names: ['picas'], roles: ['lofar', 'tokenpool_viewer'] } };
  assert.equal(catchIt(() => validate(t, null, { name: 'picas', roles: [] }, sec)), null);
  assert.equal(catchIt(() => validate(t, null, { name: 'x', roles: ['lofar'] }, sec)), null);
  assert.match(String(catchIt(() => validate(t, null, { name: 'x', roles: ['tokenpool_viewer'] }, sec))), /lacks the role/);
  assert.match(String(catchIt(() => validate(deletion, t, { name: 'picas', roles: [] }, sec))), /only a tokenpool_manager/);
  assert.equal(catchIt(() => validate(deletion, t, { name: 'boss', roles: [] }, sec)), null);
  assert.equal(catchIt(() => validate(deletion, t, { name: 'y', roles: ['lofar_admin'] }, sec)), null);
  assert.match(String(catchIt(() => validate(t, null, { name: 'picas', roles: [] }, { members: { names: [], roles: [] } }))), /lacks the role/);
});

test('design documents: Monitor, tokenpool (views of every module), the guard apart; duplicate view names refused', () => {
  const docs = designDocs();
  assert.deepEqual(docs.map((d) => d._id), ['_design/Monitor', '_design/tokenpool']);
  assert.equal(guardDesignDoc()._id, '_design/tokenpool_validate');
  assert.ok(!/instanceof/.test(guardDesignDoc().validate_doc_update!), 'arrays are tested with Array.isArray: instanceof fails in CouchDB');
  assert.deepEqual(Object.keys(docs[0]!.views!).sort(), ['done', 'error', 'locked', 'overview_total', 'todo']);
  assert.equal(docs[0]!.views!.overview_total!.reduce, '_sum');
  for (const name of ['progress', 'failures', 'by_status', 'claimable']) assert.ok(docs[1]!.views![name], name);
  assert.throws(() => mergeViews({ a: { x: { map: 'f' } }, b: { x: { map: 'g' } } }), /view "x" is defined by both a and b/);
});

function catchIt(fn: () => void): string | null {
  try {
    fn();
    return null;
  } catch (e) {
    return (e as { forbidden: string }).forbidden;
  }
}
