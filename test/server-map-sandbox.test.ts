/**
 * The map thread behind the front's stored views: rows per document as the engine emits them, a
 * source that is no function refused with its reason, and a function that never ends stopped without
 * harming the other views' functions.
 */
import { test } from 'vitest';
import assert from 'node:assert/strict';
import { MapSandbox } from '../server/embedded/map-sandbox.js';

test('rows per document, in order; a document whose map throws contributes none', async () => {
  const sandbox = new MapSandbox("function (doc) { if (doc.n === 2) throw new Error('no'); emit(doc.n, null); emit([doc.n], { twice: sum([doc.n, doc.n]) }); }");
  const rows = await sandbox.run([{ n: 1 }, { n: 2 }, { n: 3 }].map((d) => JSON.stringify(d)));
  assert.deepEqual(rows, [['[1,null]', '[[1],{"twice":2}]'], [], ['[3,null]', '[[3],{"twice":6}]']]);
  sandbox.close();
});

test('a source that is not a function is refused with that reason, each time it is used', async () => {
  const sandbox = new MapSandbox('42');
  await assert.rejects(sandbox.run(['{}']), /the map source is not a function/);
  await assert.rejects(sandbox.run(['{}']), /the map source is not a function/);
  const broken = new MapSandbox('function (doc) {');
  await assert.rejects(broken.run(['{}']), /does not evaluate/);
});

test('a map function that never ends is stopped, and the other functions keep working', async () => {
  const good = new MapSandbox('function (doc) { emit(doc._id, 1); }');
  assert.deepEqual(await good.run(['{"_id":"a"}']), [['["a",1]']]);
  const endless = new MapSandbox('function (doc) { while (true) {} }');
  await assert.rejects(endless.run(['{}']), /took longer than 10 s over 1 documents/);
  // A fresh thread, to which the good function is given again.
  assert.deepEqual(await good.run(['{"_id":"b"}']), [['["b",1]']]);
});
