/** pino loggers: JSON lines by default, pretty on a terminal; every line passes through redaction. */
import { createRequire } from 'node:module';
import type { default as Pino, Logger } from 'pino';
import { redactText } from './redact.js';

// CommonJS, loaded with require() as nano is (server/client.ts): what Node's ESM loader scans of our
// CommonJS imports for export names must stay small, or the scan's optimization costs ~10 MB of peak memory.
const pino = createRequire(import.meta.url)('pino') as typeof Pino;

export type { Logger };

export interface LogOptions {
  level?: string;
  /** Write to this fd instead of stderr (tests capture logs this way). */
  destination?: number | NodeJS.WritableStream;
  pretty?: boolean;
}

export function createLogger(name: string, opts: LogOptions = {}): Logger {
  const level = opts.level ?? process.env.TOKENPOOL_LOG_LEVEL ?? 'info';
  const pretty = opts.pretty ?? (process.stderr.isTTY && !process.env.TOKENPOOL_LOG_JSON);
  const hooks = {
    // Last line of defence: a message or field that somehow carries a secret is scrubbed before output.
    streamWrite: (line: string) => redactText(line),
  };
  if (pretty && opts.destination === undefined) {
    return pino({ name, level, hooks }, pino.transport({ target: 'pino-pretty', options: { destination: 2, ignore: 'pid' } }));
  }
  const dest = opts.destination ?? 2;
  return pino({ name, level, hooks }, typeof dest === 'number' ? pino.destination({ fd: dest, sync: true }) : dest);
}
