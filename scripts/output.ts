/** How commands print results and failures: tables for people, --json for scripts, never a secret. */
import { TokenpoolError } from '../server/errors.js';
import { redactText } from '../server/redact.js';

export function printJson(value: unknown): void {
  process.stdout.write(redactText(JSON.stringify(value, null, 2)) + '\n');
}

export function printLine(text = ''): void {
  process.stdout.write(redactText(text) + '\n');
}

/** Prints an error as `error: message` (+ hint) and sets the exit code; a stack only with TOKENPOOL_DEBUG. */
export function reportFailure(err: unknown): void {
  if (err instanceof TokenpoolError) {
    process.stderr.write(redactText(`error: ${err.message}\n`) + (err.hint ? redactText(`  ${err.hint}\n`) : ''));
    process.exitCode = err.exitCode;
  } else {
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(redactText(`error: ${message}\n`));
    if (process.env.TOKENPOOL_DEBUG && err instanceof Error && err.stack) process.stderr.write(redactText(err.stack) + '\n');
    process.exitCode = 1;
  }
}

/** A fixed-width text table; the first row is the header. */
export function table(rows: readonly (readonly (string | number)[])[]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, String(cell).length)));
  return rows
    .map((row) => row.map((cell, i) => (typeof cell === 'number' ? String(cell).padStart(widths[i]!) : String(cell).padEnd(widths[i]!))).join('  ').trimEnd())
    .join('\n');
}
