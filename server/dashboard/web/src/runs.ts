/** Active pipeline runs: per run, its steps in order with progress, blocked and failed counts (docs/pipelines.md). */
import { h } from 'preact';
import htm from 'htm';
import type { DashboardSummary } from './api.js';
import { clock, num } from './format.js';

const html = htm.bind(h);
const ACTIVE = ['locked', 'downloading', 'running', 'uploading'];

export function PipelineRuns({ s }: { s: DashboardSummary }) {
  if (!s.pipelines?.length) return null;
  return html`${s.pipelines.map(
    (r) => html`<section class="card" data-testid=${`run-${r.run}`}>
      <h2>Run ${r.run} <span class="muted">· ${r.name} · ${Object.entries(r.observations).map(([role, obs]) => `${role} ${obs}`).join(', ')} · since ${clock(r.created)}</span></h2>
      <table>
        <thead><tr><th>step</th><th>per</th><th>needs</th><th class="n">tokens</th><th class="n">waiting</th><th class="n">blocked</th><th class="n">todo</th><th class="n">running</th><th class="n">done</th><th class="n">error</th><th class="n">progress</th></tr></thead>
        <tbody>
          ${r.steps.map((st) => {
            const c = (k: string) => st.counts[k] ?? 0;
            return html`<tr data-testid=${`run-step-${st.step}`}>
              <td>${st.step}</td><td>${st.per}</td><td>${st.needs.join(', ') || '–'}</td>
              <td class="n">${num(st.total)}</td><td class="n">${num(c('waiting') + c('staging'))}</td>
              <td class=${`n ${c('blocked') ? 'error' : ''}`}>${num(c('blocked'))}</td><td class="n">${num(c('todo'))}</td>
              <td class="n">${num(ACTIVE.reduce((n, k) => n + c(k), 0))}</td><td class="n">${num(c('done'))}</td>
              <td class=${`n ${c('error') ? 'error' : ''}`}>${num(c('error'))}</td>
              <td class="n">${st.total ? `${Math.floor((100 * c('done')) / st.total)}%` : '–'}</td>
            </tr>`;
          })}
        </tbody>
      </table>
    </section>`,
  )}`;
}
