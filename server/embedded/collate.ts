/**
 * View key order, as the engine (PouchDB) sorts: null < false < true < numbers < strings < arrays
 * < objects; strings by UTF-16 code units (CouchDB uses ICU here: the one difference, see docs/server.md);
 * arrays element by element, shorter first; objects member by member (name, then value), smaller first.
 */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [k: string]: JsonValue };

function rank(v: unknown): number {
  if (v === null || v === undefined) return 1;
  switch (typeof v) {
    case 'boolean':
      return 2;
    case 'number':
      return 3;
    case 'string':
      return 4;
    default:
      return Array.isArray(v) ? 5 : 6;
  }
}

export function collate(a: unknown, b: unknown): number {
  const ra = rank(a);
  const rb = rank(b);
  if (ra !== rb) return ra - rb;
  switch (ra) {
    case 1:
      return 0;
    case 2:
      return a === b ? 0 : a ? 1 : -1;
    case 3:
      return (a as number) - (b as number);
    case 4:
      return a === b ? 0 : (a as string) > (b as string) ? 1 : -1;
    case 5: {
      const x = a as unknown[];
      const y = b as unknown[];
      const n = Math.min(x.length, y.length);
      for (let i = 0; i < n; i++) {
        const c = collate(x[i], y[i]);
        if (c !== 0) return c;
      }
      return x.length - y.length;
    }
    default: {
      const x = a as Record<string, unknown>;
      const y = b as Record<string, unknown>;
      const xk = Object.keys(x);
      const yk = Object.keys(y);
      const n = Math.min(xk.length, yk.length);
      for (let i = 0; i < n; i++) {
        const c = collate(xk[i], yk[i]) || collate(x[xk[i]!], y[yk[i]!]);
        if (c !== 0) return c;
      }
      return xk.length - yk.length;
    }
  }
}
