/**
 * Deadlines for database requests. A server that accepts connections and never answers (a stuck
 * proxy or load balancer, a hung server) must look like an outage within seconds, while a server that
 * is alive but slow (CouchDB building a view index for minutes, a longpoll feed waiting for changes)
 * must be waited for. A fixed time limit cannot tell the two apart; asking the server itself can:
 * when a request has gone `quietMs` without a byte, the server's root (`GET /`, answered by CouchDB
 * and the embedded server without touching a database) is asked, with the same limit. Any HTTP answer
 * means "alive, keep waiting"; none means the request fails with a NoAnswerError.
 */
import http from 'node:http';
import https from 'node:https';

/** Default seconds of silence before the server is asked whether it is alive (`--db-timeout`). */
export const DEFAULT_DB_TIMEOUT_S = 10;

/**
 * The code NoAnswerError carries and db-errors.ts recognises. It is in the message too: nano passes
 * on only the text of a connection failure.
 */
export const NO_ANSWER = 'ENOANSWER';

export class NoAnswerError extends Error {
  readonly code = NO_ANSWER;
  constructor(
    readonly origin: string,
    readonly seconds: number,
  ) {
    super(`${NO_ANSWER}: ${origin} took the connection but sent no answer within ${seconds} s, nor to GET /`);
    this.name = 'NoAnswerError';
  }
}

export interface AnswerWatch {
  /** bytes arrived: the quiet time starts again */
  progress(): void;
  /** the request ended either way: stop watching */
  done(): void;
}

/** Watches one request to `origin`; calls `fail` once the request and a probe of the server both went unanswered. */
export function watchAnswer(origin: string, quietMs: number, fail: (err: NoAnswerError) => void): AnswerWatch {
  let timer: NodeJS.Timeout | null = null;
  let finished = false;
  const arm = () => {
    if (timer) clearTimeout(timer);
    timer = finished ? null : setTimeout(check, quietMs);
  };
  const check = () => {
    timer = null;
    void probe(origin, quietMs).then((alive) => {
      if (finished) return;
      if (alive) arm();
      else {
        finished = true;
        fail(new NoAnswerError(origin, quietMs / 1000));
      }
    });
  };
  arm();
  return {
    progress: arm,
    done: () => {
      finished = true;
      if (timer) clearTimeout(timer);
      timer = null;
    },
  };
}

/** Requests that fall quiet together share one probe of their server. */
const probes = new Map<string, Promise<boolean>>();

function probe(origin: string, limitMs: number): Promise<boolean> {
  let pending = probes.get(origin);
  if (!pending) {
    pending = askRoot(origin, limitMs).finally(() => probes.delete(origin));
    probes.set(origin, pending);
  }
  return pending;
}

function askRoot(origin: string, limitMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const url = new URL('/', origin);
    // A connection of its own (agent: false): the pooled ones may be the stuck ones.
    const req = (url.protocol === 'https:' ? https : http).get(url, { agent: false, headers: { accept: 'application/json' } }, (res) => {
      res.resume();
      settle(true);
    });
    const timer = setTimeout(() => settle(false), limitMs);
    req.on('error', () => settle(false));
    function settle(alive: boolean) {
      clearTimeout(timer);
      req.destroy();
      resolve(alive);
    }
  });
}

/** The part of undici's dispatcher API that fetch (and so nano) uses. */
interface DispatchHandler {
  onConnect?(abort: (err?: Error) => void, context?: unknown): void;
  onHeaders?(...args: unknown[]): boolean;
  onData?(...args: unknown[]): boolean;
  onComplete?(...args: unknown[]): void;
  onError?(err: Error): void;
  onUpgrade?(...args: unknown[]): void;
}
interface Dispatcher {
  dispatch(opts: { origin?: string | URL }, handler: DispatchHandler): boolean;
}

/**
 * A dispatcher for fetch (nano's `agentOptions`) that watches every request with watchAnswer. It
 * hands the request on to fetch's own global dispatcher, which undici keeps under this symbol for
 * every copy of undici in the process to share (Node's built-in fetch included): no second HTTP
 * client is loaded into the agent.
 */
export function deadlineDispatcher(quietMs: number): Dispatcher {
  return {
    dispatch(opts, handler) {
      const base = (globalThis as Record<symbol, Dispatcher | undefined>)[Symbol.for('undici.globalDispatcher.1')];
      if (!base) throw new Error('fetch has no global dispatcher');
      const origin = String(opts.origin ?? '');
      let watch: AnswerWatch | null = null;
      const wrapped = new Proxy(handler, {
        get(target, prop, receiver) {
          const value = Reflect.get(target, prop, receiver) as unknown;
          if (typeof value !== 'function') return value;
          const method = value as (...args: unknown[]) => unknown;
          if (prop === 'onConnect') {
            return (abort: (err?: Error) => void, context?: unknown) => {
              watch = watchAnswer(origin, quietMs, (err) => abort(err));
              return method.call(target, abort, context);
            };
          }
          if (prop === 'onHeaders' || prop === 'onData') {
            return (...args: unknown[]) => {
              watch?.progress();
              return method.apply(target, args);
            };
          }
          if (prop === 'onComplete' || prop === 'onError' || prop === 'onUpgrade') {
            return (...args: unknown[]) => {
              watch?.done();
              return method.apply(target, args);
            };
          }
          return method.bind(target);
        },
      });
      return base.dispatch(opts, wrapped);
    },
  };
}
