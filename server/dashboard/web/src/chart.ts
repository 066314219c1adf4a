/** Tokens finished over time as an SVG bar chart: buckets merged so that at most ~72 bars are drawn. */
import { h } from 'preact';
import htm from 'htm';
import type { Throughput } from './api.js';
import { clock, num } from './format.js';

const html = htm.bind(h);
const W = 560;
const H = 200;
const PAD = { left: 44, right: 8, top: 10, bottom: 26 };

export function ThroughputChart({ throughput }: { throughput: Throughput }) {
  const merge = Math.max(1, Math.ceil(throughput.buckets.length / 72));
  const bars: { start: number; count: number }[] = [];
  for (let i = 0; i < throughput.buckets.length; i += merge) {
    const group = throughput.buckets.slice(i, i + merge);
    bars.push({ start: group[0]!.start, count: group.reduce((n, b) => n + b.count, 0) });
  }
  const max = Math.max(1, ...bars.map((b) => b.count));
  const innerW = W - PAD.left - PAD.right;
  const innerH = H - PAD.top - PAD.bottom;
  const bw = innerW / Math.max(1, bars.length);
  const minutes = (merge * throughput.bucketSeconds) / 60;
  const ticks = [0, Math.round(max / 2), max];
  const labelEvery = Math.max(1, Math.ceil(bars.length / 6));
  return html`<svg class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="tokens finished per ${minutes} minutes">
    ${ticks.map((t) => {
      const y = PAD.top + innerH - (t / max) * innerH;
      return html`<g><line x1=${PAD.left} x2=${W - PAD.right} y1=${y} y2=${y} class="grid" /><text x=${PAD.left - 6} y=${y + 4} class="axis" text-anchor="end">${num(t)}</text></g>`;
    })}
    ${bars.map((b, i) => {
      const bh = (b.count / max) * innerH;
      return html`<rect x=${PAD.left + i * bw + 1} y=${PAD.top + innerH - bh} width=${Math.max(1, bw - 2)} height=${bh} class="bar"><title>${clock(b.start)}: ${num(b.count)} finished</title></rect>`;
    })}
    ${bars.map((b, i) =>
      i % labelEvery === 0 ? html`<text x=${PAD.left + i * bw} y=${H - 6} class="axis">${clock(b.start).slice(0, 5)}</text>` : null,
    )}
  </svg>
  <p class="hint">Finished tokens per ${minutes === 1 ? 'minute' : `${minutes} minutes`}.</p>`;
}
