/** Reading token specs: a JSON or YAML file (one spec or a list), or NDJSON (one spec per line). */
import fs from 'node:fs';
import yaml from 'js-yaml';
import { InputError } from '../errors.js';

export interface LocatedSpec {
  where: string;
  value: unknown;
}

export function readText(file: string, what: string): string {
  try {
    return file === '-' ? fs.readFileSync(0, 'utf8') : fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new InputError(`cannot read ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** A spec file: JSON (.json) or YAML (anything else; YAML is a superset of JSON), one object or a list. */
export function parseSpecFile(text: string, name: string): LocatedSpec[] {
  let value: unknown;
  try {
    value = name.endsWith('.json') ? JSON.parse(text) : yaml.load(text, { schema: yaml.CORE_SCHEMA });
  } catch (err) {
    const e = err as Error & { mark?: { line: number } };
    const at = e.mark ? ` at line ${e.mark.line + 1}` : '';
    throw new InputError(`${name} is not valid ${name.endsWith('.json') ? 'JSON' : 'YAML'}${at}: ${e.message.split('\n')[0]}`);
  }
  if (Array.isArray(value)) return value.map((v, i) => ({ where: `${name} [${i}]`, value: v }));
  if (value && typeof value === 'object') return [{ where: name, value }];
  throw new InputError(`${name} must hold a token spec (an object) or a list of them`, 'See docs/tokens.md, "Adding tokens".');
}

/** NDJSON: one JSON object per line; blank lines skipped; a bad line is a problem at that line. */
export function parseNdjson(text: string): { specs: LocatedSpec[]; problems: { where: string; message: string }[] } {
  const specs: LocatedSpec[] = [];
  const problems: { where: string; message: string }[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (!line) return;
    const where = `line ${i + 1}`;
    try {
      const value: unknown = JSON.parse(line);
      if (!value || typeof value !== 'object' || Array.isArray(value)) problems.push({ where, message: 'must be a JSON object (one token spec per line)' });
      else specs.push({ where, value });
    } catch (err) {
      problems.push({ where, message: `bad JSON: ${(err as Error).message}` });
    }
  });
  return { specs, problems };
}

export type InputKind = 'surls' | 'spec' | 'ndjson';

/**
 * What a file given without a flag holds, judged by its content: lines of URLs are a SURL list, lines
 * that each open a JSON object are NDJSON, anything else is a JSON or YAML spec. (A one-line JSON
 * object reads the same either way.)
 */
export function detectInputKind(text: string): InputKind {
  const lines = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  if (lines.length && lines.every((l) => /^[a-z][a-z0-9+.-]*:\/\/\S+$/i.test(l))) return 'surls';
  if (lines.length && lines.every((l) => l.startsWith('{') && l.endsWith('}'))) return 'ndjson';
  return 'spec';
}
