/**
 * Active pipeline runs (docs/pipelines.md): per run, its steps in order with progress per state and
 * blocked counts, then the failed tokens with their reason and what they block.
 */
import { h } from 'preact';
import htm from 'htm';
import type { DashboardSummary } from './api.js';
import { Bar } from './bar.js';
import { clock, num, pct } from './format.js';

const html = htm.bind(h);
const ACTIVE = ['locked', 'downloading', 'running', 'uploading'];
type Run = DashboardSummary['pipelines'][number];

export function PipelineRuns({ s }: { s: DashboardSummary }) {
  if (!s.pipelines?.length) return null;
  return html`${s.pipelines.map(
    (r) => html`<section class="card" data-testid=${`run-${r.run}`}>
      <h2>Run ${r.run} <span class="muted">· ${r.name} · ${Object.entries(r.observations).map(([role, obs]) => `${role} ${obs}`).join(', ')} · since ${clock(r.created)}</span></h2>
      <table class="run">
        <thead><tr><th>step</th><th>per</th><th>needs</th><th class="n">tokens</th><th class="n">waiting</th><th class="n">blocked</th><th class="n">todo</th><th class="n">running</th><th class="n">done</th><th class="n">error</th><th>progress</th></tr></thead>
        <tbody>
          ${r.steps.map((st) => {
            const c = (k: string) => st.counts[k] ?? 0;
            return html`<tr data-testid=${`run-step-${st.step}`}>
              <td>${st.step}</td><td>${st.per}</td><td>${st.needs.join(', ') || '–'}</td>
              <td class="n">${num(st.total)}</td><td class="n">${num(c('waiting') + c('staging'))}</td>
              <td class=${`n ${c('blocked') ? 'error' : ''}`} data-testid="blocked">${num(c('blocked'))}</td><td class="n">${num(c('todo'))}</td>
              <td class="n">${num(ACTIVE.reduce((n, k) => n + c(k), 0))}</td><td class="n" data-testid="done">${num(c('done'))}</td>
              <td class=${`n ${c('error') ? 'error' : ''}`} data-testid="failed">${num(c('error'))}</td>
              <td class="wide" data-testid="progress"><${Bar} counts=${st.counts} total=${st.total} /><span class="pct">${num(c('done'))}/${num(st.total)} · ${pct(c('done'), st.total)}</span></td>
            </tr>`;
          })}
        </tbody>
      </table>
      <${Failures} r=${r} />
    </section>`,
  )}`;
}

function Failures({ r }: { r: Run }) {
  if (!r.failed) return null;
  const more = r.failed - r.failures.length;
  return html`<h3>Failed, blocking what needs them</h3>
    <table data-testid="run-failures">
      <thead><tr><th>token</th><th>step</th><th>reason</th><th>blocks</th></tr></thead>
      <tbody>
        ${r.failures.map(
          (f) => html`<tr data-testid=${`run-failure-${f.token}`}>
            <td><code>${f.token}</code></td><td>${f.step}</td><td>${f.reason ?? 'error'}</td>
            <td data-testid="blocks">${f.blocks ? `${num(f.blocks)} token${f.blocks > 1 ? 's' : ''} of ${f.blocksSteps.join(', ')}, and what needs them` : '–'}</td>
          </tr>`,
        )}
      </tbody>
    </table>
    ${more > 0 ? html`<p class="hint" data-testid="run-failures-more">and ${num(more)} more failed: <code>tokenpool pipeline status ${r.run}</code> lists them.</p>` : null}`;
}
