/** Token lists (paginated: one status of one observation × step, or across the pool) and one token's detail with log tails. */
import { h } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import htm from 'htm';
import { fetchToken, fetchTokens, type DashboardFilter, type TokenDetail, type TokenPage } from './api.js';
import { dateTime, duration } from './format.js';

const html = htm.bind(h);

/** A list the tokens route answers: a status, with both obsid and step or neither. */
export type ListSelection = DashboardFilter & { status: string };

export function TokenList({ sel, version, onOpen }: { sel: ListSelection; version: number; onOpen: (id: string) => void }) {
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  const [page, setPage] = useState<TokenPage | null>(null);
  const [error, setError] = useState<string | null>(null);
  const after = cursors[cursors.length - 1] ?? null;
  const acrossPool = sel.obsid === null;
  useEffect(() => setCursors([null]), [sel.obsid, sel.step, sel.status]);
  useEffect(() => {
    let live = true;
    fetchTokens(sel, after)
      .then((p) => live && (setPage(p), setError(null)))
      .catch((e: Error) => live && setError(e.message));
    return () => (live = false);
  }, [sel.obsid, sel.step, sel.status, after, version]);
  return html`<section class="card" data-testid="token-list">
    <h2>${acrossPool ? 'all observations' : `${sel.obsid} · ${sel.step}`} · <span class=${`chip s-${sel.status}`}>${sel.status}</span>
      ${acrossPool && html`<span class="muted">· most recently updated first</span>`}</h2>
    ${error && html`<p class="error">${error}</p>`}
    ${page &&
    html`<table class="tokens">
        <thead><tr><th>token</th>${acrossPool && html`<th>observation</th><th>step</th>`}<th>attempts</th><th>host</th><th>reason</th><th>updated</th></tr></thead>
        <tbody>
          ${page.items.map(
            (t) => html`<tr data-testid="token-row">
              <td><a href="#" onClick=${(e: Event) => (e.preventDefault(), onOpen(t.id))}>${t.id}</a></td>
              ${acrossPool && html`<td>${t.obsid}</td><td>${t.step}</td>`}
              <td class="n">${t.attempts}</td><td>${t.hostname || '—'}</td><td>${t.reason ?? ''}</td><td>${dateTime(t.updated)}</td>
            </tr>`,
          )}
          ${page.items.length === 0 && html`<tr><td colspan=${acrossPool ? 7 : 5} class="muted">No tokens in this status now.</td></tr>`}
        </tbody>
      </table>
      <div class="pager">
        <button disabled=${cursors.length === 1} onClick=${() => setCursors(cursors.slice(0, -1))}>← previous</button>
        <span class="muted">page ${cursors.length}</span>
        <button disabled=${!page.next} onClick=${() => page.next && setCursors([...cursors, page.next])}>next →</button>
      </div>`}
  </section>`;
}

export function TokenView({ id, version, onClose }: { id: string; version: number; onClose: () => void }) {
  const [t, setT] = useState<TokenDetail | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let live = true;
    fetchToken(id)
      .then((d) => live && (setT(d), setError(null)))
      .catch((e: Error) => live && setError(e.message));
    return () => (live = false);
  }, [id, version]);
  return html`<section class="card detail" data-testid="token-detail">
    <h2>${id} <button class="close" onClick=${onClose} aria-label="close">×</button></h2>
    ${error && html`<p class="error">${error}</p>`}
    ${t &&
    html`<dl>
        <dt>status</dt><dd><span class=${`chip s-${t.status}`} data-testid="detail-status">${t.status}</span>${t.reason ? ` — ${t.reason}` : ''}</dd>
        <dt>attempts</dt><dd>${t.attempts} of ${t.maxAttempts}</dd>
        <dt>subbands</dt><dd>${t.subbands.join(', ')}</dd>
        <dt>exit code</dt><dd>${t.exitCode ?? '—'}</dd>
        <dt>command</dt><dd><code>${t.command ?? '—'}</code></dd>
        <dt>inputs</dt><dd>${t.inputs.map((u) => html`<div><code>${u}</code></div>`)}</dd>
        ${t.outputs.length > 0 && html`<dt>outputs</dt><dd>${t.outputs.map((u) => html`<div><code>${u}</code></div>`)}</dd>`}
      </dl>
      <h3>Attempts</h3>
      ${t.history.length === 0
        ? html`<p class="muted">Not attempted yet.</p>`
        : html`<table>
            <thead><tr><th>#</th><th>host</th><th>batch job</th><th>started</th><th>took</th><th>exit</th><th>outcome</th></tr></thead>
            <tbody>
              ${t.history.map(
                (a) => html`<tr>
                  <td class="n">${a.attempt}</td><td>${a.hostname}</td><td>${a.batchJobId ?? '—'}</td><td>${dateTime(a.start)}</td>
                  <td>${a.end ? duration(a.end - a.start) : 'running'}</td><td class="n">${a.exitCode ?? '—'}</td><td>${a.reason}</td>
                </tr>`,
              )}
            </tbody>
          </table>`}
      ${t.logs.map((l) => html`<h3>${l.name} <span class="muted">(last ${l.lines.length} lines)</span></h3><pre class="log">${l.lines.join('\n')}</pre>`)}`}
  </section>`;
}
