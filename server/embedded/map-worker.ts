/**
 * The thread that runs design documents' map functions for the front's stored views (map-sandbox.ts),
 * each in its own node:vm context, so that mapping never blocks the front's event loop and a function
 * that never ends can be stopped by ending this thread.
 */
import vm from 'node:vm';
import { parentPort } from 'node:worker_threads';

export type MapRequest = { kind: 'define'; map: number; source: string } | { kind: 'drop'; map: number } | { kind: 'run'; map: number; call: number; docs: string[] };
export type MapReply = { call: number; rows: string } | { call: number; error: string };

// The helpers CouchDB's JavaScript query server offers map functions.
const PRELUDE = `
var __rows = [];
function emit(key, value) {
  __rows.push(JSON.stringify([key === undefined ? null : key, value === undefined ? null : value]));
}
function log() {}
function isArray(x) { return Array.isArray(x); }
function toJSON(x) { return JSON.stringify(x); }
function sum(values) { var s = 0; for (var i = 0; i < values.length; i++) s += values[i]; return s; }
`;

// Each document's rows; a document whose map throws contributes no rows (CouchDB and the engine agree).
const RUN_BATCH = new vm.Script(`
(function () {
  var out = [];
  for (var i = 0; i < __docs.length; i++) {
    __rows = [];
    try { __map(JSON.parse(__docs[i])); } catch (e) { __rows = []; }
    out.push(__rows);
  }
  __rows = [];
  return JSON.stringify(out);
})()
`);

/** Contexts by map id; an error instead when the source did not evaluate to a function. */
const contexts = new Map<number, vm.Context | Error>();

function define(source: string): vm.Context | Error {
  try {
    const context = vm.createContext(Object.create(null), { codeGeneration: { strings: false, wasm: false } });
    vm.runInContext(PRELUDE, context);
    vm.runInContext(`var __map = (${source});`, context);
    if (vm.runInContext('typeof __map', context) !== 'function') return new Error('the map source is not a function');
    return context;
  } catch (err) {
    return new Error(`the map source does not evaluate: ${(err as Error).message}`);
  }
}

parentPort!.on('message', (msg: MapRequest) => {
  if (msg.kind === 'define') {
    contexts.set(msg.map, define(msg.source));
    return;
  }
  if (msg.kind === 'drop') {
    contexts.delete(msg.map);
    return;
  }
  const context = contexts.get(msg.map);
  let reply: MapReply;
  if (!context) reply = { call: msg.call, error: 'map function not defined' };
  else if (context instanceof Error) reply = { call: msg.call, error: context.message };
  else {
    context.__docs = msg.docs;
    try {
      reply = { call: msg.call, rows: RUN_BATCH.runInContext(context) as string };
    } catch (err) {
      reply = { call: msg.call, error: String((err as Error).message ?? err) };
    } finally {
      context.__docs = [];
    }
  }
  parentPort!.postMessage(reply);
});
