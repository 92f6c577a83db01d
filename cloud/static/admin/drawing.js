// The course drawn from its own points: the map (start, finish, numbered checkpoints)
// and the elevation profile over every lap, with checkpoints and climbs marked.

import { el, formatKm, svgEl } from "../common/ui.js";
import { mount, niceTicks } from "./charts.js";
import { fitProjection } from "./geometry.js";

const MAP_WIDTH = 1000;
const MAP_MARGIN = 40;
const MAX_DRAWN = 4000;

/** The course map into `container` (scales with it: a shape, its labels are few). */
export function drawMap(container, geometry, title) {
  const projection = fitProjection(geometry, MAP_WIDTH, MAP_MARGIN);
  const n = geometry.lat.length;
  const step = Math.max(1, Math.ceil(n / MAX_DRAWN));
  const points = [];
  for (let i = 0; i < n; i += step)
    points.push(projection.project(geometry.lat[i], geometry.lon[i]));
  points.push(projection.project(geometry.lat[n - 1], geometry.lon[n - 1]));
  const line = points.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" ");
  const svg = svgEl(
    "svg",
    {
      viewBox: `0 0 ${projection.width} ${projection.height}`,
      role: "img",
      "aria-labelledby": "map-svg-title",
    },
    svgEl("title", { id: "map-svg-title", text: title }),
    svgEl("polyline", { class: "course-casing", points: line }),
    svgEl("polyline", { class: "course-line", points: line }),
  );
  const [fx, fy] = points[points.length - 1];
  svg.append(svgEl("rect", { class: "finish", x: fx - 19, y: fy - 19, width: 38, height: 38 }));
  const [sx, sy] = points[0];
  svg.append(svgEl("circle", { class: "start", cx: sx, cy: sy, r: 15 }));
  geometry.checkpoints.forEach((cp, k) => {
    const [x, y] = projection.project(...geometry.pointAt(cp.distance_m));
    svg.append(
      svgEl("circle", { class: "cp-mark", cx: x, cy: y, r: 16 }),
      svgEl("text", { class: "map-label", x: x + 20, y: y - 14, text: String(k + 1) }),
    );
  });
  container.replaceChildren(svg);
}

/**
 * The elevation profile over the whole race, drawn at the container's width. A click
 * calls `onPick(distance_m)` (keyboard users type distances in the checkpoint form).
 */
export function drawProfile(container, geometry, { onPick = null, title } = {}) {
  mount(container, (width) => {
    const height = 200;
    const m = { left: 48, right: 12, top: 14, bottom: 30 };
    const plotW = width - m.left - m.right;
    const plotH = height - m.top - m.bottom;
    const samples = geometry.profile(Math.min(600, Math.max(50, Math.round(plotW / 2))));
    const low = geometry.hasElevation ? geometry.minEle : 0;
    const high = geometry.hasElevation ? geometry.maxEle : 1;
    const pad = Math.max(5, (high - low) * 0.1);
    const yTicks = niceTicks(low - pad, high + pad, 4);
    const [y0, y1] = [yTicks[0], yTicks[yTicks.length - 1]];
    const x = (d) => m.left + (geometry.finish > 0 ? (d / geometry.finish) * plotW : 0);
    const y = (e) => m.top + plotH - ((e - y0) / (y1 - y0 || 1)) * plotH;
    const svg = svgEl(
      "svg",
      { width, height, role: "img", "aria-label": title || "Elevation profile" },
      svgEl("title", { text: title || "Elevation profile" }),
    );
    for (const t of yTicks) {
      svg.append(
        svgEl("line", { class: "gridline", x1: m.left, x2: width - m.right, y1: y(t), y2: y(t) }),
        svgEl("text", {
          class: "muted",
          x: m.left - 6,
          y: y(t) + 4,
          "text-anchor": "end",
          text: `${t} m`,
        }),
      );
    }
    const ridge = samples.map(
      ([d, e], i) => `${i ? "L" : "M"}${x(d).toFixed(1)},${y(e).toFixed(1)}`,
    );
    const base = m.top + plotH;
    svg.append(
      svgEl("path", {
        class: "terrain",
        d: `${ridge.join("")}L${x(geometry.finish)},${base}L${x(0)},${base}Z`,
      }),
      svgEl("path", { class: "ridge", d: ridge.join("") }),
    );
    const xTicks = niceTicks(0, geometry.finish / 1000, Math.max(2, Math.floor(plotW / 90)));
    for (const t of xTicks.filter((t) => t * 1000 <= geometry.finish + 1)) {
      svg.append(
        svgEl("text", {
          class: "muted",
          x: x(t * 1000),
          y: height - 10,
          "text-anchor": "middle",
          text: `${t} km`,
        }),
      );
    }
    geometry.checkpoints.forEach((cp, k) => {
      if (cp.end_m !== null && cp.end_m !== undefined) {
        svg.append(
          svgEl("rect", {
            class: "climb-band",
            x: x(cp.distance_m),
            y: m.top,
            width: Math.max(1, x(cp.end_m) - x(cp.distance_m)),
            height: plotH,
          }),
        );
      }
      const at = x(cp.distance_m);
      const mark = svgEl("line", { class: "cp-line", x1: at, x2: at, y1: m.top, y2: base });
      mark.append(
        svgEl("title", { text: `${k + 1}. ${cp.name} (${cp.kind}) at ${formatKm(cp.distance_m)}` }),
      );
      svg.append(
        mark,
        svgEl("text", { class: "cp-label", x: at + 3, y: m.top + 10, text: String(k + 1) }),
      );
    });
    svg.append(
      svgEl("line", { class: "axis-line", x1: m.left, x2: width - m.right, y1: base, y2: base }),
    );
    if (onPick) {
      svg.classList.add("pickable");
      svg.addEventListener("click", (event) => {
        const box = svg.getBoundingClientRect();
        const d = ((event.clientX - box.left - m.left) / plotW) * geometry.finish;
        if (d >= 0 && d <= geometry.finish) onPick(Math.round(d));
      });
    }
    const note = geometry.hasElevation
      ? null
      : el("p", { class: "note", text: "The GPX has no elevations." });
    container.replaceChildren(svg, ...(note ? [note] : []));
  });
}
