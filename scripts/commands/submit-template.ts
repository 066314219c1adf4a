/**
 * Rendering the pilot templates in jdl/: `{{name}}` is replaced by a value the caller has already
 * quoted for the target language; a line holding `{{name?}}` is dropped when that value is absent;
 * a line holding `{{name*}}` is repeated once per element of a list value.
 * A value with a line break is refused: it could add an #SBATCH line or a JDL attribute.
 */
import fs from 'node:fs';
import { InputError } from '../../server/errors.js';
import { PROJECT_ROOT } from '../../server/own-module.js';

type Value = string | number | null | undefined;
export type TemplateValues = Record<string, Value | readonly string[]>;

export const PILOT_SCRIPT = `${PROJECT_ROOT}jdl/pilot.sh`;
export const DEFAULT_BUNDLE = `${PROJECT_ROOT}dist/tokenpool-agent.mjs`;

export function readTemplate(name: 'pilot.sbatch' | 'pilot.jdl'): string {
  return fs.readFileSync(`${PROJECT_ROOT}jdl/${name}`, 'utf8');
}

export function renderTemplate(template: string, values: TemplateValues): string {
  for (const [key, value] of Object.entries(values)) {
    for (const v of Array.isArray(value) ? value : [value]) {
      if (typeof v === 'string' && /[\r\n\0]/.test(v)) {
        throw new InputError(`the value for ${key} contains a line break`, 'Give each option on one line.');
      }
    }
  }
  const lines: string[] = [];
  for (const line of template.split('\n')) {
    const repeated = /\{\{(\w+)\*\}\}/.exec(line)?.[1];
    if (repeated) {
      const list = values[repeated];
      if (!Array.isArray(list)) throw new Error(`template value ${repeated} must be a list`);
      for (const item of list as string[]) lines.push(line.replace(`{{${repeated}*}}`, item));
      continue;
    }
    const optional = [...line.matchAll(/\{\{(\w+)\?\}\}/g)].map((m) => m[1]!);
    if (optional.some((k) => values[k] === undefined || values[k] === null || values[k] === '')) continue;
    lines.push(
      line.replace(/\{\{(\w+)\??\}\}/g, (_m, key: string) => {
        const value = values[key];
        if (value === undefined || value === null || Array.isArray(value)) throw new Error(`template value ${key} missing`);
        return String(value);
      }),
    );
  }
  return lines.join('\n');
}

/** A POSIX shell word: single-quoted unless plainly safe. */
export function shQuote(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** A ClassAd string literal. */
export function jdlString(s: string): string {
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}
