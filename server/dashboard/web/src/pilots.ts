/**
 * The pilots panel: submission records (`tokenpool submit`) with pilots queued, running, finished and
 * unknown, as `tokenpool pilots` lists them. Grid pilots are listed with their state unknown, and the
 * panel says why, rather than leaving them out.
 */
import { h } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import htm from 'htm';
import { fetchPilots, type PilotPanel, type PilotRecord } from './api.js';
import { dateTime, num } from './format.js';

const html = htm.bind(h);
/** Pilot states change without touching the pool (queued → running): read them this often too. */
const REFRESH_MS = 30_000;

function stateOf(r: PilotRecord, slurm: PilotPanel['slurm']): string {
  if (r.finishedAt) return `all finished (seen ${dateTime(r.finishedAt)})`;
  if (r.pilots.unknown === 0) return 'from squeue';
  if (r.backend !== 'slurm') return 'unknown: grid pilot';
  return slurm === 'unavailable' ? 'unknown: squeue unavailable' : 'unknown: another Slurm cluster';
}

function jobIds(ids: string[]): string {
  return ids.length > 1 ? `${ids[0]} (+${ids.length - 1})` : (ids[0] ?? '');
}

export function PilotsPanel({ version }: { version: number }) {
  const [panel, setPanel] = useState<PilotPanel | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    const t = setInterval(() => setTick((n) => n + 1), REFRESH_MS);
    return () => clearInterval(t);
  }, []);
  useEffect(() => {
    let live = true;
    fetchPilots()
      .then((p) => live && (setPanel(p), setError(null)))
      .catch((e: Error) => live && setError(e.message));
    return () => (live = false);
  }, [version, tick]);

  const gridUnknown = panel?.submissions.some((r) => r.backend !== 'slurm' && !r.finishedAt) ?? false;
  return html`<section class="card" data-testid="pilots">
    <h2>Pilots ${panel &&
      html`<span class="muted" data-testid="pilot-totals">· ${(['queued', 'running', 'finished', 'unknown'] as const).map((k) => `${num(panel.totals[k])} ${k}`).join(', ')}</span>`}</h2>
    ${error && html`<p class="error">${error}</p>`}
    ${panel && panel.submissions.length === 0 && html`<p class="muted">No pilots submitted to this pool yet (<code>tokenpool submit slurm|grid</code>).</p>`}
    ${panel &&
    panel.submissions.length > 0 &&
    html`<table class="pilots">
      <thead><tr><th>submitted</th><th>backend</th><th>job id</th><th class="n">pilots</th><th class="n">queued</th><th class="n">running</th>
        <th class="n">finished</th><th class="n">unknown</th><th>state</th><th>by</th></tr></thead>
      <tbody>
        ${panel.submissions.map(
          (r) => html`<tr data-testid="pilot-row" data-backend=${r.backend}>
            <td>${dateTime(r.time)}</td><td>${r.backend}${r.auto ? html` <span class="muted">(auto)</span>` : ''}</td><td><code>${jobIds(r.jobIds)}</code></td>
            <td class="n">${num(r.count)}</td><td class="n">${num(r.pilots.queued)}</td><td class="n">${num(r.pilots.running)}</td>
            <td class="n">${num(r.pilots.finished)}</td><td class=${`n ${r.pilots.unknown ? 'unknown' : ''}`}>${num(r.pilots.unknown)}</td>
            <td data-testid="pilot-state">${stateOf(r, panel.slurm)}</td><td>${r.who}</td>
          </tr>`,
        )}
      </tbody>
    </table>
    ${panel.more && html`<p class="muted">Older submissions: <code>tokenpool pilots</code>.</p>`}`}
    ${gridUnknown &&
    html`<p class="hint" data-testid="grid-note">Grid pilots (DIRAC, gLite) are shown as submitted with their state unknown: the dashboard cannot ask the grid's
      workload manager. Their tokens show what they do; the grid's own tools (<code>dirac-wms-job-status</code>, <code>glite-wms-job-status</code>) tell where they are.</p>`}
    ${panel?.slurm === 'unavailable' &&
    html`<p class="hint" data-testid="slurm-note">squeue did not answer where this dashboard runs (no Slurm here, or a slow one), so Slurm pilots not yet seen finished are counted as unknown.
      <code>tokenpool pilots</code> on the cluster's login node tells.</p>`}
  </section>`;
}
