// Hand-drawn SVG charts for comparing riders: a line chart (time behind the fastest along
// the course) and paired horizontal bars (average and top speed). Each is drawn at the
// width its box has (so text stays readable on a phone); the figures are in the tables
// too, and each chart carries a text summary for screen readers.

import { el, svgEl } from "/static/common/ui.js";

const MIN_W = 300;
const PAD = { left: 56, right: 18, top: 14, bottom: 48 };

/** Round numbers for an axis from 0 to about `max`: [step, top]. */
export function niceScale(max, ticks = 5) {
  if (!(max > 0)) return [1, 1];
  const raw = max / ticks;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= raw);
  return [step, Math.ceil(max / step - 1e-9) * step];
}

/** A label cut to about `px` pixels of 12 px text. */
function clip(label, px) {
  const chars = Math.max(4, Math.floor(px / 7));
  return label.length > chars ? `${label.slice(0, chars - 1)}…` : label;
}

function text(x, y, value, attrs = {}) {
  return svgEl("text", { x, y, ...attrs, text: value });
}

function legend(series) {
  return el(
    "ul",
    { class: "legend" },
    ...series.map((s) =>
      el(
        "li",
        {},
        svgEl(
          "svg",
          { width: 18, height: 10, "aria-hidden": "true" },
          svgEl("rect", { width: 18, height: 10, rx: 2, class: s.cls }),
        ),
        s.label,
      ),
    ),
  );
}

/** Empty the figure but for its caption; returns the width to draw at. */
function reset(figure) {
  const caption = figure.querySelector("figcaption");
  figure.replaceChildren(...(caption ? [caption] : []));
  return Math.max(MIN_W, Math.floor(figure.clientWidth || 0));
}

/**
 * A line chart in `figure` (its figcaption kept): `series` are `{label, cls, bib,
 * points: [[x, y]...]}` with y growing downwards (time behind: the fastest on top);
 * `marks` are labelled vertical lines (checkpoints); `xMax` the right end of the x axis.
 */
export function lineChart(figure, { series, marks = [], xMax, xFormat, yFormat, yTitle, summary }) {
  const W = reset(figure);
  const H = Math.round(Math.min(320, Math.max(220, W * 0.5)));
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const [yStep, yMax] = niceScale(Math.max(0, ...series.flatMap((s) => s.points.map((p) => p[1]))));
  const x = (v) => PAD.left + (xMax > 0 ? (v / xMax) * plotW : 0);
  const y = (v) => PAD.top + (v / yMax) * plotH;
  const chart = svgEl("svg", {
    viewBox: `0 0 ${W} ${H}`,
    width: W,
    height: H,
    role: "img",
    "aria-label": summary,
  });
  for (let v = 0; v <= yMax + 1e-9; v += yStep) {
    chart.append(
      svgEl("line", { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), class: "gridline" }),
      text(PAD.left - 6, y(v) + 4, yFormat(v), { "text-anchor": "end" }),
    );
  }
  const bottom = H - PAD.bottom;
  marks.forEach((mark, i) => {
    const at = x(mark.x);
    const row = bottom + 30 + (i % 2) * 14; // alternate rows: close marks do not overlap
    chart.append(
      svgEl("line", { x1: at, x2: at, y1: PAD.top, y2: bottom, class: "gridline mark" }),
      text(at, row, mark.label, { "text-anchor": "middle", class: "muted" }),
    );
  });
  chart.append(
    svgEl("line", { x1: PAD.left, x2: PAD.left, y1: PAD.top, y2: bottom, class: "axis-line" }),
    svgEl("line", { x1: PAD.left, x2: W - PAD.right, y1: bottom, y2: bottom, class: "axis-line" }),
    text(x(0), bottom + 16, xFormat(0), { "text-anchor": "start" }),
    text(x(xMax), bottom + 16, xFormat(xMax), { "text-anchor": "end" }),
    text(12, PAD.top + plotH / 2, yTitle, {
      class: "muted",
      "text-anchor": "middle",
      transform: `rotate(-90 12 ${PAD.top + plotH / 2})`,
    }),
  );
  for (const s of series) {
    if (!s.points.length) continue;
    const d = s.points
      .map(([px, py], k) => `${k ? "L" : "M"}${x(px).toFixed(1)} ${y(py).toFixed(1)}`)
      .join("");
    const [lx, ly] = s.points[s.points.length - 1];
    chart.append(
      svgEl("path", { d, class: `series ${s.cls}`, "data-bib": s.bib }),
      svgEl("circle", { cx: x(lx), cy: y(ly), r: 4, class: `point ${s.cls}` }),
    );
  }
  figure.append(chart, legend(series));
}

/**
 * Paired horizontal bars in `figure`: `rows` are `{label, cls, value, extra}`: a thick bar
 * for the value (average speed) with its figure, a thin one for the extra (top speed).
 */
export function barChart(figure, { rows, format, summary, valueName, extraName }) {
  const W = reset(figure);
  const rowH = 34;
  const H = PAD.top + rows.length * rowH + 26;
  const left = Math.min(150, Math.round(W * 0.35));
  const plotW = W - left - PAD.right - 40;
  const values = rows.flatMap((r) => [r.value || 0, r.extra || 0]);
  const [step, top] = niceScale(Math.max(0, ...values));
  const x = (v) => left + (top > 0 ? (v / top) * plotW : 0);
  const width = (v) => Math.max(1, x(v) - left);
  const chart = svgEl("svg", {
    viewBox: `0 0 ${W} ${H}`,
    width: W,
    height: H,
    role: "img",
    "aria-label": summary,
  });
  for (let v = 0; v <= top + 1e-9; v += step) {
    chart.append(
      svgEl("line", { x1: x(v), x2: x(v), y1: PAD.top - 4, y2: H - 22, class: "gridline" }),
      text(x(v), H - 6, format(v), { "text-anchor": "middle", class: "muted" }),
    );
  }
  rows.forEach((row, i) => {
    const y0 = PAD.top + i * rowH;
    chart.append(text(left - 8, y0 + 18, clip(row.label, left - 12), { "text-anchor": "end" }));
    if (row.value !== null && row.value !== undefined) {
      const bar = { x: left, y: y0 + 4, width: width(row.value), height: 16, rx: 2 };
      chart.append(
        svgEl("rect", { ...bar, class: `bar ${row.cls}` }),
        text(x(row.value) + 6, y0 + 17, format(row.value)),
      );
    }
    if (row.extra !== null && row.extra !== undefined) {
      const bar = { x: left, y: y0 + 23, width: width(row.extra), height: 5, rx: 1 };
      chart.append(svgEl("rect", { ...bar, class: `bar thin ${row.cls}` }));
    }
  });
  const key = `Thick bars: ${valueName}; thin bars: ${extraName}.`;
  figure.append(chart, el("p", { class: "hint", text: key }));
}
