// Charts drawn as SVG with DOM APIs (no library, no inline style): a vertical bar chart with a
// y axis of round numbers, thinned x labels and a <title> tooltip on every bar, and a meter (how
// much of a limit is used) for the usage page. Colours come from console.css classes.
import { h, svg } from '/console/js/dom.js';

const W = 800;

/** A "nice" upper bound for an axis: 1, 2, 2.5 or 5 times a power of ten, at least `max`. */
function niceMax(max) {
  if (!(max > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(max));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= max) return m * p;
  return 10 * p;
}

/**
 * `data`: [{label, value, title}]. `format(n)` writes axis and tooltip values. Answers an
 * <svg role="img"> with `testid` as its data-testid.
 */
export function barChart({ data, format = String, height = 220, testid, label }) {
  const H = height;
  const m = { top: 12, right: 12, bottom: 30, left: 64 };
  const plotW = W - m.left - m.right;
  const plotH = H - m.top - m.bottom;
  const max = niceMax(Math.max(0, ...data.map((d) => Number(d.value) || 0)));
  const chart = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': label || 'bar chart', 'data-testid': testid, preserveAspectRatio: 'xMidYMid meet' });
  chart.appendChild(svg('title', {}, label || 'bar chart'));
  for (const f of [0, 0.5, 1]) {
    const y = m.top + plotH - f * plotH;
    chart.appendChild(svg('line', { x1: m.left, x2: W - m.right, y1: y, y2: y, class: f === 0 ? 'axis' : 'grid' }));
    chart.appendChild(svg('text', { x: m.left - 8, y: y + 4, 'text-anchor': 'end', class: 'tick' }, format(max * f)));
  }
  const n = Math.max(data.length, 1);
  const slot = plotW / n;
  const barW = Math.max(1, Math.min(48, slot * 0.72));
  const every = Math.ceil(n / 12);
  data.forEach((d, i) => {
    const v = Math.max(0, Number(d.value) || 0);
    const bh = (v / max) * plotH;
    const x = m.left + i * slot + (slot - barW) / 2;
    const bar = svg('rect', { x: x.toFixed(2), y: (m.top + plotH - bh).toFixed(2), width: barW.toFixed(2), height: Math.max(bh, v > 0 ? 1 : 0).toFixed(2), class: 'bar', 'data-value': v, 'data-label': d.label });
    bar.appendChild(svg('title', {}, d.title || `${d.label}: ${format(v)}`));
    chart.appendChild(bar);
    if (i % every === 0) {
      chart.appendChild(svg('text', { x: (m.left + i * slot + slot / 2).toFixed(2), y: H - 10, 'text-anchor': 'middle', class: 'tick' }, d.short || d.label));
    }
  });
  return chart;
}

/**
 * A meter of `used` out of `limit` (null: no limit). `format` writes the numbers; `extra` is a
 * line under it (when it resets).
 */
export function meter({ title, used, limit, remaining, format = String, extra, testid }) {
  const has = limit !== null && limit !== undefined && Number.isFinite(Number(limit));
  const u = Number(used) || 0;
  const l = has ? Number(limit) : 0;
  const frac = has ? (l > 0 ? Math.min(1, u / l) : 1) : 0;
  const level = !has ? 'none' : frac >= 1 ? 'full' : frac >= 0.75 ? 'warn' : 'ok';
  const fill = h('div', { class: ['meter-fill', `meter-${level}`] });
  fill.style.width = `${(frac * 100).toFixed(1)}%`;
  const left = has ? (remaining !== null && remaining !== undefined ? Number(remaining) : Math.max(0, l - u)) : null;
  const bar = h('div', { class: 'meter', role: 'meter', 'aria-label': title, 'aria-valuemin': '0', 'aria-valuemax': has ? String(l) : null, 'aria-valuenow': has ? String(Math.min(u, l)) : null, 'aria-valuetext': has ? `${format(u)} of ${format(l)}` : `${format(u)}, no limit` }, fill);
  return h('div', { class: 'meter-block', 'data-testid': testid, dataset: { level } },
    h('div', { class: 'meter-head' }, h('span', { class: 'meter-title' }, title),
      h('span', { class: 'meter-value' }, has ? `${format(left)} left` : 'no limit')),
    bar,
    h('p', { class: 'small muted' }, has ? `${format(u)} of ${format(l)} used` : `${format(u)} used`, extra ? [' · ', extra] : null));
}
