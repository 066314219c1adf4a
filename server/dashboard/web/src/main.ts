/** The tokenpool dashboard page: progress per observation × step, throughput, failures, token detail; live. */
import { h, render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import htm from 'htm';
import { DB, fetchSummary, onPoolChange, type StatusSummary } from './api.js';
import { clock, duration, num, pct, statusesIn, STATUS_ORDER } from './format.js';
import { ThroughputChart } from './chart.js';
import { TokenList, TokenView, type ListSelection } from './token.js';
import '../style.css';

const html = htm.bind(h);
/** finished work from the left, then work in progress, then work not started */
const BAR_ORDER = ['done', 'error', 'uploading', 'running', 'downloading', 'locked', 'todo', 'staging', 'waiting'];

function Bar({ counts, total }: { counts: Partial<Record<string, number>>; total: number }) {
  return html`<div class="bar-track" title=${STATUS_ORDER.filter((s) => counts[s]).map((s) => `${s} ${counts[s]}`).join(', ')}>
    ${BAR_ORDER.map((s) => {
      const n = counts[s] ?? 0;
      return n > 0 ? html`<span class=${`seg s-${s}`} style=${{ width: `${(n / total) * 100}%` }}></span>` : null;
    })}
  </div>`;
}

function Totals({ s }: { s: StatusSummary }) {
  return html`<section class="totals">
    <div class="stat main"><span class="label">tokens</span><span class="value" data-testid="total">${num(s.totals.total)}</span></div>
    ${STATUS_ORDER.map(
      (st) => html`<div class=${`stat ${(s.totals.counts[st] ?? 0) === 0 ? 'zero' : ''}`}>
        <span class="label"><i class=${`dot s-${st}`}></i>${st}</span>
        <span class="value" data-testid=${`total-${st}`}>${num(s.totals.counts[st] ?? 0)}</span>
      </div>`,
    )}
    <div class="stat main"><span class="label">per hour</span><span class="value" data-testid="per-hour">${num(s.totals.perHour)}</span></div>
    <div class="stat main"><span class="label">ETA</span><span class="value" data-testid="eta">${duration(s.totals.etaSeconds)}</span></div>
  </section>`;
}

function ProgressTable({ s, onPick }: { s: StatusSummary; onPick: (sel: ListSelection) => void }) {
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
        ${s.rows.length === 0 && html`<tr><td colspan=${6 + cols.length} class="muted">No tokens yet: add some with <code>tokenpool tokens add</code>.</td></tr>`}
      </tbody>
    </table>
  </section>`;
}

function Failures({ s, onOpen }: { s: StatusSummary; onOpen: (id: string) => void }) {
  if (s.failures.length === 0) return html`<section class="card"><h2>Failures</h2><p class="muted">No failed tokens.</p></section>`;
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

function App() {
  const [summary, setSummary] = useState<StatusSummary | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [live, setLive] = useState(false);
  const [version, setVersion] = useState(0);
  const [hours, setHours] = useState(1);
  const [list, setList] = useState<ListSelection | null>(null);
  const [token, setToken] = useState<string | null>(null);
  const inFlight = useRef(false);
  const again = useRef(false);

  const load = async () => {
    // one summary query at a time; a change meanwhile asks for one more
    if (inFlight.current) return void (again.current = true);
    inFlight.current = true;
    try {
      setSummary(await fetchSummary(hours));
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
  useEffect(() => void load(), [hours]);
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
    [hours],
  );

  return html`<header>
      <div class="brand">tokenpool <span class="db">${DB}</span></div>
      <div class="live">
        <span class=${`pulse ${live ? 'on' : 'off'}`} data-testid="live"></span>${live ? 'live' : 'reconnecting…'}
        ${summary && html`<span class="muted"> · updated <span data-testid="updated">${clock(summary.time)}</span></span>`}
      </div>
    </header>
    <main>
      ${error && html`<p class="error" data-testid="error">${error}</p>`}
      ${!summary && !error && html`<p class="muted">Loading…</p>`}
      ${summary &&
      html`<${Totals} s=${summary} />
        <${ProgressTable} s=${summary} onPick=${(sel: ListSelection) => (setList(sel), setToken(null))} />
        <div class="two">
          <section class="card">
            <h2>Throughput <span class="muted">· ${num(summary.throughput.perHour)} tokens/hour over the last hour</span>
              <select value=${hours} onChange=${(e: Event) => setHours(Number((e.target as HTMLSelectElement).value))}>
                ${[1, 6, 24, 72].map((hh) => html`<option value=${hh}>last ${hh} h</option>`)}
              </select>
            </h2>
            <${ThroughputChart} throughput=${summary.throughput} />
          </section>
          <${Failures} s=${summary} onOpen=${setToken} />
        </div>
        ${summary.pilots.available && html`<p class="muted">Pilots: ${Object.entries(summary.pilots.counts).map(([k, n]) => `${n} ${k}`).join(', ')}</p>`}
        ${list && html`<${TokenList} sel=${list} version=${version} onOpen=${setToken} />`}
        ${token && html`<${TokenView} id=${token} version=${version} onClose=${() => setToken(null)} />`}`}
    </main>`;
}

render(html`<${App} />`, document.getElementById('app')!);
