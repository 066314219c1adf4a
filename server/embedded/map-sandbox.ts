/**
 * Runs a design document's map function over documents, outside the engine, on one worker thread
 * shared by every stored view (map-worker.ts). Design documents are written by database admins, so
 * this is containment against mistakes (a loop that never ends, a throw), not a security boundary:
 * a batch that takes longer than BATCH_TIMEOUT_MS ends the thread (a new one serves the next batch).
 * Unlike a vm timeout, which starts a watchdog thread per call, this costs one message per batch.
 */
import type { Worker } from 'node:worker_threads';
import { ownWorker } from '../own-module.js';
import type { MapReply, MapRequest } from './map-worker.js';

/** One emitted row, as JSON text of [key, value] so nothing from the sandbox's realm leaks out. */
export type EmittedRows = string[];

const BATCH_TIMEOUT_MS = 10_000;

/** The worker thread and the calls waiting for it. */
class MapThread {
  private worker: Worker | null = null;
  /** which map functions the current worker has been given */
  private defined = new Set<number>();
  private readonly calls = new Map<number, { resolve: (rows: string) => void; reject: (err: Error) => void }>();
  private nextCall = 0;

  run(map: number, source: string, docs: string[]): Promise<string> {
    const worker = this.ensureWorker();
    if (!this.defined.has(map)) {
      this.post(worker, { kind: 'define', map, source });
      this.defined.add(map);
    }
    const call = ++this.nextCall;
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => this.restart(new Error(`the map function took longer than ${BATCH_TIMEOUT_MS / 1000} s over ${docs.length} documents`)), BATCH_TIMEOUT_MS);
      this.calls.set(call, {
        resolve: (rows) => {
          clearTimeout(timer);
          resolve(rows);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      });
      this.post(worker, { kind: 'run', map, call, docs });
    });
  }

  forget(map: number): void {
    if (this.worker && this.defined.delete(map)) this.post(this.worker, { kind: 'drop', map });
  }

  private post(worker: Worker, msg: MapRequest): void {
    worker.postMessage(msg);
  }

  private ensureWorker(): Worker {
    if (this.worker) return this.worker;
    const worker = ownWorker('./map-worker', import.meta.url);
    worker.on('message', (reply: MapReply) => {
      const waiting = this.calls.get(reply.call);
      if (!waiting) return;
      this.calls.delete(reply.call);
      if ('error' in reply) waiting.reject(new Error(reply.error));
      else waiting.resolve(reply.rows);
    });
    worker.on('error', (err) => this.restart(err));
    worker.on('exit', () => {
      if (this.worker === worker) this.restart(new Error('the map thread exited'));
    });
    // After the listeners (adding one refs the thread again): an idle map thread keeps no process alive.
    worker.unref();
    this.worker = worker;
    return worker;
  }

  /** Ends the thread (stuck or dead) and fails every call waiting for it; the next call starts a new one. */
  private restart(reason: Error): void {
    const worker = this.worker;
    this.worker = null;
    this.defined = new Set();
    if (worker) void worker.terminate();
    const waiting = [...this.calls.values()];
    this.calls.clear();
    for (const w of waiting) w.reject(reason);
  }
}

const thread = new MapThread();
let nextMap = 0;

export class MapSandbox {
  private readonly id = ++nextMap;

  constructor(private readonly source: string) {}

  /** Rows per document, in the order given; docs are JSON texts. Rejects when the source is not a function. */
  async run(docs: string[]): Promise<EmittedRows[]> {
    if (docs.length === 0) return [];
    return JSON.parse(await thread.run(this.id, this.source, docs)) as EmittedRows[];
  }

  /** The index is dropped: the thread forgets the function. */
  close(): void {
    thread.forget(this.id);
  }
}
