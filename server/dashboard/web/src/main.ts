/**
 * The tokenpool dashboard page: filters, progress per observation × step, throughput, failures,
 * pilots, token lists and detail; live. What it shows is in its URL (url.ts).
 */
import { h, render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import htm from 'htm';
import { DB, fetchSummary, onPoolChange, type DashboardFilter, type DashboardSummary } from './api.js';
import { clock, duration, num, pct, statusesIn, STATUS_ORDER } from './format.js';
import { Bar } from './bar.js';
import { ThroughputChart } from './chart.js';
import { FilterBar } from './filters.js';
import { PilotsPanel } from './pilots.js';
import { PipelineRuns } from './runs.js';
import { TokenList, TokenView, type ListSelection } from './token.js';
import { useUrlState, type PageState } from './url.js';
import '../style.css';

const html = htm.bind(h);

function Totals({ s }: { s: DashboardSummary }) {
  return html`<section class="totals">
    <div class="stat main"><span class="label">tokens</span><span class="value" data-testid="total">${num(s.totals.total + s.picasTokens)}</span></div>
    ${STATUS_ORDER.map(
      (st) => html`<div class=${`stat ${(s.totals.counts[st] ?? 0) === 0 ? 'zero' : ''}`}>
        <span class="label"><i class=${`dot s-${st}`}></i>${st}</span>
        <span class="value" data-testid=${`total-${st}`}>${num(s.totals.counts[st] ?? 0)}</span>
      </div>`,
    )}
    ${s.picasTokens > 0 &&
    html`<div class="stat picas" title="PiCaS-format tokens: not adopted yet"><span class="label">PiCaS-format</span><span class="value" data-testid="total-picas">${num(s.picasTokens)}</span></div>`}
    <div class="stat main"><span class="label">per hour</span><span class="value" data-testid="per-hour">${num(s.totals.perHour)}</span></div>
    <div class="stat main"><span class="label">ETA</span><span class="value" data-testid="eta">${duration(s.totals.etaSeconds)}</span></div>
  </section>
  ${s.picasTokens > 0 &&
  html`<p class="notice" data-testid="picas-hint">${num(s.picasTokens)} PiCaS-format token${s.picasTokens > 1 ? 's' : ''} (written by picasclient or GRID_LRT scripts)
    ${s.picasTokens > 1 ? 'are' : 'is'} in the pool but not in the tables below: ${s.picasTokens > 1 ? 'they have' : 'it has'} no tokenpool status, observation or step yet, and no tokenpool agent claims ${s.picasTokens > 1 ? 'them' : 'it'}.
    Adopt them with an account that may write: <code>tokenpool tokens adopt --dry-run</code>, then <code>tokenpool tokens adopt</code>.</p>`}`;
}

function ProgressTable({ s, onPick }: { s: DashboardSummary; onPick: (sel: ListSelection) => void }) {
  const filtered = s.filter.obsid !== null || s.filter.step !== null || s.filter.status !== null;
  const cols = statusesIn(s.totals.counts);
  return html`<section class="card">
    <h2>Progress per observation × step</h2>
    <table class="progress">
      <thead><tr><th>observation</th><th>step</th><th class="wide">progress</th><th class="n">done / total</th>
        ${cols.map((c) => html`<th class="n">${c}</th>`)}<th class="n">per hour</th><th class="n">ETA</th></tr></thead>
      <tbody>
        ${s.rows.map(
          (r) => html`<tr data-testid=${`row-${r.obsid}-${r.step}`}>
            <td>${r.obsid}</td><td>${r.step}</td>
            <td class="wide"><${Bar} counts=${r.counts} total=${r.total} /><span class="pct">${pct(r.done, r.total)}</span></td>
            <td class="n" data-testid=${`done-${r.obsid}-${r.step}`}>${num(r.done)} / ${num(r.total)}</td>
            ${cols.map((c) =>
              (r.counts[c] ?? 0) > 0
                ? html`<td class="n"><a href="#" data-testid=${`cell-${r.obsid}-${r.step}-${c}`} onClick=${(e: Event) => (e.preventDefault(), onPick({ obsid: r.obsid, step: r.step, status: c }))}>${num(r.counts[c] ?? 0)}</a></td>`
                : html`<td class="n muted" data-testid=${`cell-${r.obsid}-${r.step}-${c}`}>0</td>`,
            )}
            <td class="n">${num(r.perHour)}</td><td class="n">${duration(r.etaSeconds)}</td>
          </tr>`,
        )}
        ${s.rows.length === 0 && html`<tr><td colspan=${6 + cols.length} class="muted">${filtered ? 'No tokens match the filter.' : html`No tokens yet: add some with <code>tokenpool tokens add</code>.`}</td></tr>`}
      </tbody>
    </table>
  </section>`;
}

function Failures({ s, onOpen }: { s: DashboardSummary; onOpen: (id: string) => void }) {
  if (s.failures.length === 0) {
    const why = s.filter.status !== null && s.filter.status !== 'error' ? `The status filter (${s.filter.status}) leaves failed tokens out.` : 'No failed tokens.';
    return html`<section class="card"><h2>Failures</h2><p class="muted">${why}</p></section>`;
  }
  return html`<section class="card">
    <h2>Failures</h2>
    <table class="failures">
      <thead><tr><th class="n">tokens</th><th>observation</th><th>step</th><th class="n">exit</th><th>reason</th><th>examples</th></tr></thead>
      <tbody>
        ${s.failures.map(
          (g) => html`<tr data-testid="failure-group">
            <td class="n" data-testid="failure-count">${num(g.count)}</td><td>${g.obsid}</td><td>${g.step}</td><td class="n">${g.exitCode ?? '—'}</td>
            <td>${g.reason}</td>
            <td>${g.examples.length === 0 && html`<span class="muted">see tokenpool failures</span>`}${g.examples.slice(0, 2).map((id) => html`<a href="#" class="example" onClick=${(e: Event) => (e.preventDefault(), onOpen(id))}>${id}</a> `)}</td>
          </tr>`,
        )}
      </tbody>
    </table>
    ${s.failuresOmitted > 0 && html`<p class="muted">… and ${s.failuresOmitted} smaller groups.</p>`}
    <p class="hint">Logs and retry commands: <code>tokenpool failures</code>; retry with <code>tokenpool tokens reset --status error --obsid … --step …</code></p>
  </section>`;
}

/** The token list the filter asks for: a status, and both an observation and a step or neither (what the tokens route lists). */
function listOf(st: PageState): ListSelection | null {
  if (st.status === null || (st.obsid === null) !== (st.step === null)) return null;
  return { obsid: st.obsid, step: st.step, status: st.status };
}

/** The filter as a query string (obsid, step, status): what the summary on screen was computed for. */
function filterText(f: DashboardFilter): string {
  return (['obsid', 'step', 'status'] as const)
    .filter((k) => f[k] !== null)
    .map((k) => `${k}=${f[k]}`)
    .join('&');
}

function App() {
  const [state, update] = useUrlState();
  const [summary, setSummary] = useState<DashboardSummary | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [live, setLive] = useState(false);
  const [version, setVersion] = useState(0);
  const inFlight = useRef(false);
  const again = useRef(false);
  const filter: DashboardFilter = { obsid: state.obsid, step: state.step, status: state.status };
  // what the next summary query asks for: the latest filter, even for a reload queued behind an older one
  const wanted = useRef({ filter, hours: state.hours });
  wanted.current = { filter, hours: state.hours };

  const load = async () => {
    // one summary query at a time; a change meanwhile asks for one more
    if (inFlight.current) return void (again.current = true);
    inFlight.current = true;
    try {
      setSummary(await fetchSummary(wanted.current.filter, wanted.current.hours));
      setError(null);
    } catch (e) {
      setError((e as Error).message);
    } finally {
      inFlight.current = false;
      if (again.current) {
        again.current = false;
        void load();
      }
    }
  };
  useEffect(() => void load(), [state.obsid, state.step, state.status, state.hours]);
  useEffect(
    () =>
      onPoolChange(
        () => {
          void load();
          setVersion((v) => v + 1);
        },
        (ok) => {
          setLive(ok);
          if (ok) void load();
        },
      ),
    [],
  );

  const list = listOf(state);
  const shown = summary && summary.filter.obsid === state.obsid && summary.filter.step === state.step && summary.filter.status === state.status;
  return html`<header>
      <div class="brand">tokenpool <span class="db">${DB}</span></div>
      <div class="live">
        <span class=${`pulse ${live ? 'on' : 'off'}`} data-testid="live"></span>${live ? 'live' : 'reconnecting…'}
        ${summary && html`<span class="muted"> · updated <span data-testid="updated">${clock(summary.time)}</span></span>`}
      </div>
    </header>
    <main>
      <${FilterBar} filter=${filter} choices=${summary?.choices ?? null} onPick=${(change: Partial<DashboardFilter>) => update({ ...change, token: null })} />
      ${error && html`<p class="error" data-testid="error">${error}</p>`}
      ${!summary && !error && html`<p class="muted">Loading…</p>`}
      ${summary &&
      html`<div class=${shown ? '' : 'stale'} data-testid=${shown ? 'summary' : 'summary-loading'} data-filter=${filterText(summary.filter)}>
        <${Totals} s=${summary} />
        <${ProgressTable} s=${summary} onPick=${(sel: ListSelection) => update({ ...sel, token: null })} />
        <${PipelineRuns} s=${summary} />
        ${list && html`<${TokenList} sel=${list} version=${version} onOpen=${(id: string) => update({ token: id })} />`}
        ${state.status !== null && !list && html`<p class="hint" data-testid="list-hint">Pick a count in the table to list those tokens.</p>`}
        ${state.token && html`<${TokenView} id=${state.token} version=${version} onClose=${() => update({ token: null })} />`}
        <div class="two">
          <section class="card">
            <h2>Throughput <span class="muted">· ${num(summary.throughput.perHour)} tokens/hour over the last hour</span>
              <select value=${state.hours} onChange=${(e: Event) => update({ hours: Number((e.target as HTMLSelectElement).value) })}>
                ${[1, 6, 24, 72].map((hh) => html`<option value=${hh}>last ${hh} h</option>`)}
              </select>
            </h2>
            <${ThroughputChart} throughput=${summary.throughput} />
          </section>
          <${Failures} s=${summary} onOpen=${(id: string) => update({ token: id })} />
        </div>
      </div>`}
      <${PilotsPanel} version=${version} />
    </main>`;
}

render(html`<${App} />`, document.getElementById('app')!);
