/** Durations ("90", "30m", "1h", "2d") and sizes ("500M", "20G") as flags take them. */
import { InputError } from '../../server/errors.js';

export function parseDuration(value: string | number, flag: string): number {
  if (typeof value === 'number') return value;
  const m = /^(\d+(?:\.\d+)?)\s*(s|m|min|h|d)?$/i.exec(value.trim());
  if (!m) throw new InputError(`${flag}: "${value}" is not a duration`, `Give seconds or a number with s, m, h or d, e.g. ${flag} 1h`);
  const unit = (m[2] ?? 's').toLowerCase();
  const factor = unit === 'd' ? 86400 : unit === 'h' ? 3600 : unit.startsWith('m') ? 60 : 1;
  return Math.round(Number(m[1]) * factor);
}

export function parseSize(value: string | number, flag: string): number {
  if (typeof value === 'number') return value;
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?$/i.exec(value.trim());
  if (!m) throw new InputError(`${flag}: "${value}" is not a size`, `Give bytes or a number with K, M, G or T, e.g. ${flag} 20G`);
  const exp = { '': 0, b: 0, k: 1, m: 2, g: 3, t: 4 }[(m[2] ?? '').charAt(0).toLowerCase()] ?? 0;
  return Math.round(Number(m[1]) * 1024 ** exp);
}
