// Hand-drawn SVG charts: horizontal bars and lines. They are drawn at the width of their
// container in CSS pixels (so text keeps its size on a phone) and again when it changes.
// Each chart is an image with a text alternative; the pages show the figures as tables
// too. Series differ by colour and by dash pattern, never by colour alone.

import { el, svgEl } from "../common/ui.js";

const mounted = new WeakMap();
const DASHES = ["", "6 3", "2 3", "10 3 2 3", "1 4", "8 5", "4 2 1 2", "12 4"];
export const SERIES_CLASSES = 8;

/** Draw `draw(width)` into `container` now and whenever its width changes. */
export function mount(container, draw) {
  let state = mounted.get(container);
  if (!state) {
    state = { draw, width: 0 };
    mounted.set(container, state);
    new ResizeObserver(() => {
      const width = Math.floor(container.clientWidth);
      if (state.draw && width > 0 && width !== state.width) {
        state.width = width;
        state.draw(width);
      }
    }).observe(container);
  }
  state.draw = draw;
  const width = Math.floor(container.clientWidth);
  if (width > 0) {
    state.width = width;
    draw(width);
  }
}

/** Show `nodes` in a chart's place; it is not drawn again on resize. */
export function clearChart(container, ...nodes) {
  const state = mounted.get(container);
  if (state) state.draw = null;
  container.replaceChildren(...nodes);
}

/** About `count` round tick values covering min..max. */
export function niceTicks(min, max, count = 5) {
  if (!(max > min)) {
    const v = Number.isFinite(min) ? min : 0;
    return [v - 1, v, v + 1].filter((t) => t >= 0 || v < 0);
  }
  const raw = (max - min) / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) || raw;
  const ticks = [];
  for (let t = Math.floor(min / step) * step; t <= max + step * 1e-9; t += step) {
    ticks.push(Number(t.toPrecision(12)));
  }
  if (ticks[ticks.length - 1] < max)
    ticks.push(Number((ticks[ticks.length - 1] + step).toPrecision(12)));
  return ticks;
}

function chartSvg(width, height, label) {
  return svgEl(
    "svg",
    { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label },
    svgEl("title", { text: label }),
  );
}

/**
 * Horizontal bars: `items` [{label, value, text?}] (null values are left out and said so).
 * `format(value)` writes a value; `label` names the chart.
 */
export function barChart(container, { label, items, format = String, unitLabel = "" }) {
  mount(container, (width) => {
    const shown = items.filter((i) => i.value !== null && i.value !== undefined);
    if (!shown.length) {
      container.replaceChildren(el("p", { class: "note", text: `${label}: no figures yet.` }));
      return;
    }
    const row = 26;
    const top = 4;
    const bottom = 28;
    const longest = Math.max(...shown.map((i) => i.label.length));
    const labelW = Math.min(Math.round(width * 0.4), longest * 7.5 + 10);
    const valueW = 76;
    const plotW = Math.max(40, width - labelW - valueW);
    const max = Math.max(...shown.map((i) => i.value), 0);
    const ticks = niceTicks(0, max || 1, Math.max(2, Math.floor(plotW / 90)));
    const top_ = ticks[ticks.length - 1] || 1;
    const x = (v) => labelW + (Math.max(0, v) / top_) * plotW;
    const height = top + shown.length * row + bottom;
    const svg = chartSvg(width, height, label);
    for (const t of ticks) {
      svg.append(
        svgEl("line", { class: "gridline", x1: x(t), x2: x(t), y1: top, y2: height - bottom }),
        svgEl("text", {
          class: "muted",
          x: x(t),
          y: height - bottom + 16,
          "text-anchor": "middle",
          text: format(t),
        }),
      );
    }
    shown.forEach((item, k) => {
      const y = top + k * row;
      const bar = svgEl("rect", {
        class: "bar",
        x: labelW,
        y: y + 4,
        width: Math.max(1, x(item.value) - labelW),
        height: row - 8,
      });
      bar.append(svgEl("title", { text: `${item.label}: ${item.text ?? format(item.value)}` }));
      svg.append(
        svgEl("text", {
          x: labelW - 6,
          y: y + row / 2 + 4,
          "text-anchor": "end",
          text: clip(item.label, Math.floor((labelW - 8) / 7)),
        }),
        bar,
        svgEl("text", {
          x: x(item.value) + 5,
          y: y + row / 2 + 4,
          text: item.text ?? format(item.value),
        }),
      );
    });
    svg.append(
      svgEl("line", { class: "axis-line", x1: labelW, x2: labelW, y1: top, y2: height - bottom }),
    );
    if (unitLabel) {
      svg.append(
        svgEl("text", {
          class: "muted",
          x: width - 2,
          y: height - bottom + 16,
          "text-anchor": "end",
          text: unitLabel,
        }),
      );
    }
    container.replaceChildren(svg);
  });
}

/**
 * Lines: `series` [{label, points: [[x, y], ...]}] over shared axes. `xFormat`/`yFormat`
 * write tick values; `xLabel`/`yLabel` name the axes; `yZero` starts the y axis at 0.
 */
export function lineChart(
  container,
  { label, series, xFormat = String, yFormat = String, xLabel = "", yLabel = "", yZero = true },
) {
  mount(container, (width) => {
    const all = series.flatMap((s) => s.points);
    if (!all.length) {
      container.replaceChildren(el("p", { class: "note", text: `${label}: no figures yet.` }));
      return;
    }
    const height = Math.round(Math.min(320, Math.max(200, width * 0.45)));
    const m = { left: 58, right: 14, top: yLabel ? 26 : 12, bottom: 44 };
    const xs = all.map((p) => p[0]);
    const ys = all.map((p) => p[1]);
    const xTicks = niceTicks(
      Math.min(...xs),
      Math.max(...xs),
      Math.max(2, Math.floor(width / 110)),
    );
    const yTicks = niceTicks(yZero ? Math.min(0, ...ys) : Math.min(...ys), Math.max(...ys), 5);
    const [x0, x1] = [xTicks[0], xTicks[xTicks.length - 1]];
    const [y0, y1] = [yTicks[0], yTicks[yTicks.length - 1]];
    const plotW = width - m.left - m.right;
    const plotH = height - m.top - m.bottom;
    const x = (v) => m.left + ((v - x0) / (x1 - x0 || 1)) * plotW;
    const y = (v) => m.top + plotH - ((v - y0) / (y1 - y0 || 1)) * plotH;
    const svg = chartSvg(width, height, label);
    for (const t of yTicks) {
      svg.append(
        svgEl("line", { class: "gridline", x1: m.left, x2: width - m.right, y1: y(t), y2: y(t) }),
        svgEl("text", {
          class: "muted",
          x: m.left - 6,
          y: y(t) + 4,
          "text-anchor": "end",
          text: yFormat(t),
        }),
      );
    }
    for (const t of xTicks) {
      svg.append(
        svgEl("text", {
          class: "muted",
          x: x(t),
          y: height - m.bottom + 16,
          "text-anchor": "middle",
          text: xFormat(t),
        }),
      );
    }
    svg.append(
      svgEl("line", { class: "axis-line", x1: m.left, x2: m.left, y1: m.top, y2: m.top + plotH }),
      svgEl("line", {
        class: "axis-line",
        x1: m.left,
        x2: width - m.right,
        y1: m.top + plotH,
        y2: m.top + plotH,
      }),
    );
    if (xLabel) {
      svg.append(
        svgEl("text", {
          class: "muted",
          x: m.left + plotW / 2,
          y: height - 6,
          "text-anchor": "middle",
          text: xLabel,
        }),
      );
    }
    if (yLabel) {
      svg.append(svgEl("text", { class: "muted", x: 4, y: 12, text: yLabel }));
    }
    series.forEach((s, k) => {
      const [cls, dash] = seriesStyle(k);
      const path = s.points.map(
        ([px, py], i) => `${i ? "L" : "M"}${x(px).toFixed(1)},${y(py).toFixed(1)}`,
      );
      svg.append(
        svgEl("path", {
          class: `series ${cls}`,
          d: path.join(""),
          "stroke-dasharray": dash || null,
        }),
      );
      for (const [px, py] of s.points) {
        const dot = svgEl("circle", { class: `point ${cls}`, cx: x(px), cy: y(py), r: 3.5 });
        dot.append(svgEl("title", { text: `${s.label}: ${xFormat(px)}, ${yFormat(py)}` }));
        svg.append(dot);
      }
    });
    const legend = el(
      "ul",
      { class: "legend", "aria-label": `${label}: legend` },
      ...series.map((s, k) => {
        const [cls, dash] = seriesStyle(k);
        const sample = svgEl(
          "svg",
          { width: 28, height: 10, "aria-hidden": "true" },
          svgEl("line", {
            class: `series ${cls}`,
            x1: 1,
            x2: 27,
            y1: 5,
            y2: 5,
            "stroke-dasharray": dash || null,
          }),
        );
        return el("li", {}, sample, s.label);
      }),
    );
    container.replaceChildren(svg, legend);
  });
}

/** Series k's colour class and dash pattern: 64 distinct pairs. */
function seriesStyle(k) {
  const dash = DASHES[(k + Math.floor(k / SERIES_CLASSES)) % DASHES.length];
  return [`c${(k % SERIES_CLASSES) + 1}`, dash];
}

function clip(text, chars) {
  return text.length > chars ? `${text.slice(0, Math.max(1, chars - 1))}…` : text;
}
