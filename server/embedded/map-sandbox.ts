/**
 * Runs a design document's map function over documents, outside the engine, in a node:vm context.
 * Design documents are written by database admins, so this is containment against mistakes (a loop
 * that never ends, a throw), not a security boundary.
 */
import vm from 'node:vm';

/** One emitted row, as JSON text of [key, value] so nothing from the sandbox's realm leaks out. */
export type EmittedRows = string[];

const BATCH_TIMEOUT_MS = 10_000;

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

export class MapSandbox {
  private readonly context: vm.Context;

  /** Throws when the source does not evaluate to a function. */
  constructor(mapSource: string) {
    this.context = vm.createContext(Object.create(null), { codeGeneration: { strings: false, wasm: false } });
    vm.runInContext(PRELUDE, this.context);
    vm.runInContext(`var __map = (${mapSource});`, this.context, { timeout: BATCH_TIMEOUT_MS });
    if (vm.runInContext('typeof __map', this.context) !== 'function') {
      throw new Error('the map source is not a function');
    }
  }

  /** Rows per document, in the order given; docs are JSON texts. */
  run(docs: string[]): EmittedRows[] {
    this.context.__docs = docs;
    try {
      return JSON.parse(RUN_BATCH.runInContext(this.context, { timeout: BATCH_TIMEOUT_MS }) as string) as EmittedRows[];
    } finally {
      this.context.__docs = [];
    }
  }
}
