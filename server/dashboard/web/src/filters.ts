/** The filter bar: observation, step and status menus; every choice is a history entry (see url.ts). */
import { h } from 'preact';
import htm from 'htm';
import type { DashboardFilter, DashboardSummary } from './api.js';
import { STATUS_ORDER } from './format.js';

const html = htm.bind(h);

interface MenuProps {
  name: keyof DashboardFilter;
  label: string;
  options: readonly string[];
  value: string | null;
  onPick: (change: Partial<DashboardFilter>) => void;
}

function Menu({ name, label, options, value, onPick }: MenuProps) {
  // a filter from a link may name something the pool no longer has: keep it visible and choosable
  const all = value && !options.includes(value) ? [value, ...options] : options;
  return html`<label class="filter">${label}
    <select data-testid=${`filter-${name}`} value=${value ?? ''} onChange=${(e: Event) => onPick({ [name]: (e.target as HTMLSelectElement).value || null })}>
      <option value="">all</option>
      ${all.map((o) => html`<option value=${o}>${o}</option>`)}
    </select>
  </label>`;
}

export function FilterBar({ filter, choices, onPick }: { filter: DashboardFilter; choices: DashboardSummary['choices'] | null; onPick: (change: Partial<DashboardFilter>) => void }) {
  const active = filter.obsid !== null || filter.step !== null || filter.status !== null;
  return html`<section class="filters" data-testid="filters">
    <${Menu} name="obsid" label="observation" options=${choices?.obsids ?? []} value=${filter.obsid} onPick=${onPick} />
    <${Menu} name="step" label="step" options=${choices?.steps ?? []} value=${filter.step} onPick=${onPick} />
    <${Menu} name="status" label="status" options=${STATUS_ORDER} value=${filter.status} onPick=${onPick} />
    ${active && html`<button data-testid="filter-clear" onClick=${() => onPick({ obsid: null, step: null, status: null })}>show all</button>`}
  </section>`;
}
