/** A horizontal bar of token counts per state, finished work from the left. */
import { h } from 'preact';
import htm from 'htm';
import { statusesIn } from './format.js';

const html = htm.bind(h);
/** finished work from the left (failed, then blocked by a failure), then work in progress, then work not started */
const BAR_ORDER = ['done', 'error', 'blocked', 'uploading', 'running', 'downloading', 'locked', 'todo', 'staging', 'waiting'];

export function Bar({ counts, total }: { counts: Partial<Record<string, number>>; total: number }) {
  return html`<div class="bar-track" title=${statusesIn(counts).map((s) => `${s} ${counts[s]}`).join(', ')}>
    ${BAR_ORDER.map((s) => {
      const n = counts[s] ?? 0;
      return n > 0 ? html`<span class=${`seg s-${s}`} data-state=${s} style=${{ width: `${(n / total) * 100}%` }}></span>` : null;
    })}
  </div>`;
}
