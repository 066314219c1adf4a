/**
 * A usage error as a user can act on it: what is wrong, the one example of the command that fits
 * (the one using the flag in question), a close flag name when one was mistyped, and where the
 * full help is. The command's help text (rendered unwrapped) is the source of its examples and flags.
 */

export interface UsageError {
  message: string;
  /** The command as typed, without flags (e.g. "tokens add"). */
  command: string;
  /** The flags the user gave (without dashes). */
  given: string[];
}

interface HelpParts {
  flags: string[];
  examples: string[];
}

function parseHelp(help: string): HelpParts {
  const flags = [...help.matchAll(/^\s+(?:-\w, )?--([\w-]+)/gm)].map((m) => m[1]!);
  const at = help.indexOf('\nExamples:\n');
  const examples =
    at < 0
      ? []
      : help
          .slice(at + '\nExamples:\n'.length)
          .split('\n')
          .map((line) => line.trim())
          .filter((line) => line && !line.endsWith(':'))
          // yargs puts the description after a run of spaces
          .map((line) => line.split(/\s{2,}/)[0]!);
  return { flags, examples };
}

/** Flags named in yargs' message: "Unknown arguments: bogus, other", "Missing required argument: surls". */
function flagsIn(message: string): { unknown: string[]; missing: string[] } {
  const list = (re: RegExp) => (re.exec(message)?.[1] ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  return { unknown: list(/Unknown arguments?: (.+)/), missing: list(/Missing required arguments?: (.+)/) };
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = row[j]!;
      row[j] = Math.min(up + 1, row[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return row[b.length]!;
}

function closest(name: string, flags: string[]): string | undefined {
  const best = flags.map((f) => ({ f, d: distance(name, f) })).sort((x, y) => x.d - y.d)[0];
  return best && best.d <= (name.length >= 4 ? 2 : 1) ? best.f : undefined;
}

/** The example that fits: one using a missing flag, else the one sharing most flags with what was typed. */
function fittingExample(examples: string[], missing: string[], given: string[]): string | undefined {
  const uses = (example: string, flag: string) => new RegExp(`--${flag}(\\s|=|$)`).test(example);
  const withMissing = examples.find((e) => missing.every((m) => uses(e, m)));
  if (missing.length && withMissing) return withMissing;
  return [...examples].sort((a, b) => given.filter((g) => uses(b, g)).length - given.filter((g) => uses(a, g)).length)[0];
}

export function explainUsageError(error: UsageError, help: string): string {
  const { flags, examples } = parseHelp(help);
  const { unknown, missing } = flagsIn(error.message);
  const lines = [`error: ${error.message}`];
  const meant: string[] = [];
  for (const name of unknown) {
    const near = closest(name, flags);
    if (near) lines.push(`  did you mean --${near}?`);
    if (near) meant.push(near);
  }
  const example = fittingExample(examples, missing, [...error.given.filter((g) => !unknown.includes(g)), ...meant]);
  if (example) lines.push(`example: ${example}`);
  lines.push(`all options: tokenpool ${error.command ? `${error.command} ` : ''}--help`);
  return `${lines.join('\n')}\n`;
}
