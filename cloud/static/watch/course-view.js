// The course drawn twice, as a map and as an elevation profile, with a dot per rider on
// each: the live page and the replay both use it. No tiles, no internet: the map is the
// course's own points in a flat projection (sync_protocol/web/course.js).

import { formatDistance } from "/static/shared/board.js";
import { CourseGeometry, fitProjection } from "/static/shared/course.js";

const SVG_NS = "http://www.w3.org/2000/svg";
const MAP_WIDTH = 1000;
const MAP_MARGIN = 40;
const PROFILE_W = 1000;
const PROFILE_H = 200;
const DOT_CLASSES = ["front", "stale", "out", "finished", "selected", "compared"];

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function div(className, text) {
  const node = document.createElement("div");
  node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function place(dot, xPct, yPct) {
  const left = `${Math.min(Math.max(xPct, 0), 100).toFixed(3)}%`;
  const top = `${Math.min(Math.max(yPct, 0), 100).toFixed(3)}%`;
  if (dot.style.left !== left) dot.style.left = left;
  if (dot.style.top !== top) dot.style.top = top;
}

/**
 * A map and a profile in two containers. `setCourse(course)` draws `Course.to_dict()`
 * (or says there is none); `show(riders)` places `{bib, lat_e7, lon_e7, progress_m,
 * title, classes: {front, stale, out, finished, selected, compared}}` and removes the
 * dots of riders not given.
 */
export class CourseView {
  constructor(mapBox, profileBox, { label = "Course map with every rider's position" } = {}) {
    this.geometry = null;
    this.projection = null;
    this.elevation = null;
    this.courseKey = null;
    this.map = this.build(mapBox, "course-map", label);
    this.profile = this.build(profileBox, "course-profile", "Elevation profile, riders on it");
    this.profile.svg.setAttribute("viewBox", `0 0 ${PROFILE_W} ${PROFILE_H}`);
    this.profile.axis = div("axis");
    this.profile.axis.setAttribute("aria-hidden", "true");
    this.profile.frame.append(this.profile.axis);
    this.mapDots = new Map();
    this.profileDots = new Map();
  }

  build(box, className, label) {
    const frame = div(className);
    const drawing = svg("svg", { role: "img", preserveAspectRatio: "none" });
    drawing.append(svg("title", {}, label));
    const layer = svg("g");
    drawing.append(layer);
    const riders = div("markers");
    riders.setAttribute("aria-hidden", "true");
    frame.append(drawing, riders);
    const note = document.createElement("p");
    note.className = "note";
    box.replaceChildren(frame, note);
    return { frame, svg: drawing, layer, riders, note };
  }

  /** Draw a course (`Course.to_dict()`, or null); nothing is redrawn when it is the same. */
  setCourse(course) {
    const key = course ? JSON.stringify(course) : "";
    if (key === this.courseKey) return this.geometry;
    this.courseKey = key;
    const drawable = course && course.points && course.points.length;
    this.geometry = drawable ? new CourseGeometry(course) : null;
    for (const dots of [this.mapDots, this.profileDots]) {
      for (const dot of dots.values()) dot.remove();
      dots.clear();
    }
    this.drawMap();
    this.drawProfile();
    return this.geometry;
  }

  drawMap() {
    const { layer, frame, note, svg: drawing } = this.map;
    layer.replaceChildren();
    const geometry = this.geometry;
    if (!geometry || geometry.lat.length < 2) {
      this.projection = null;
      frame.hidden = true;
      note.textContent = "This race has no course yet.";
      return;
    }
    frame.hidden = false;
    note.textContent = "";
    const projection = fitProjection(geometry, MAP_WIDTH, MAP_MARGIN);
    this.projection = projection;
    drawing.setAttribute("viewBox", `0 0 ${projection.width} ${projection.height}`);
    frame.style.aspectRatio = `${projection.width} / ${projection.height}`;
    const d = geometry
      .drawnIndexes(4000)
      .map((i, k) => {
        const [x, y] = projection.project(geometry.lat[i], geometry.lon[i]);
        return `${k ? "L" : "M"}${x.toFixed(1)} ${y.toFixed(1)}`;
      })
      .join("");
    layer.append(svg("path", { d, class: "course-casing" }));
    layer.append(svg("path", { d, class: "course-line" }));
    for (const cp of geometry.checkpoints) {
      const [x, y] = projection.project(...geometry.pointAt(cp.distance_m));
      const mark = svg("circle", { cx: x, cy: y, r: 7, class: `checkpoint cp-${cp.kind}` });
      mark.append(svg("title", {}, `${cp.name} (${formatDistance(cp.distance_m)})`));
      layer.append(mark);
    }
    const [sx, sy] = projection.project(...geometry.pointAt(0));
    const [fx, fy] = projection.project(...geometry.pointAt(geometry.finish));
    const finish = svg("rect", { x: fx - 9, y: fy - 9, width: 18, height: 18, class: "finish" });
    finish.append(svg("title", {}, "Finish"));
    const start = svg("circle", { cx: sx, cy: sy, r: 8, class: "start" });
    start.append(svg("title", {}, "Start"));
    layer.append(finish, start);
  }

  elevationY(ele) {
    const { min, max } = this.elevation;
    return PROFILE_H - 12 - ((ele - min) / (max - min)) * (PROFILE_H - 30);
  }

  drawProfile() {
    const { layer, frame, note, axis } = this.profile;
    layer.replaceChildren();
    axis.replaceChildren();
    const geometry = this.geometry;
    frame.hidden = !geometry;
    if (!geometry) {
      note.textContent = "";
      return;
    }
    const samples = geometry.profile(500);
    let min = Math.min(...samples.map((s) => s[1]));
    let max = Math.max(...samples.map((s) => s[1]));
    if (max - min < 20) [min, max] = [(min + max) / 2 - 10, (min + max) / 2 + 10];
    this.elevation = { min, max };
    const x = (dist) => (geometry.finish > 0 ? (dist / geometry.finish) * PROFILE_W : 0);
    const y = (ele) => this.elevationY(ele).toFixed(1);
    const line = samples.map(([dist, ele], k) => `${k ? "L" : "M"}${x(dist).toFixed(1)} ${y(ele)}`);
    const ground = `${line.join("")}L${PROFILE_W} ${PROFILE_H}L0 ${PROFILE_H}Z`;
    layer.append(svg("path", { d: ground, class: "terrain" }));
    const ridge = { d: line.join(""), class: "ridge", "vector-effect": "non-scaling-stroke" };
    layer.append(svg("path", ridge));
    for (const cp of geometry.checkpoints) {
      const at = x(cp.distance_m);
      const attrs = { x1: at, x2: at, y1: 0, y2: PROFILE_H, "vector-effect": "non-scaling-stroke" };
      layer.append(svg("line", { ...attrs, class: "cp-line" }));
      if (cp.end_m !== null && cp.end_m !== undefined && cp.end_m > cp.distance_m) {
        const width = x(cp.end_m) - at;
        layer.append(svg("rect", { x: at, y: 0, width, height: PROFILE_H, class: "climb-band" }));
      }
    }
    const labels = [
      ["top left", `${Math.round(max)} m`],
      ["bottom left", `${Math.round(min)} m`],
      ["bottom right", formatDistance(geometry.finish)],
    ];
    for (const [where, text] of labels) axis.append(div(where, text));
    note.textContent = geometry.hasElevation
      ? ""
      : "The course has no elevation data: the profile is flat.";
  }

  dot(dots, container, bib) {
    let dot = dots.get(bib);
    if (!dot) {
      dot = div("dot", String(bib));
      dot.dataset.bib = String(bib);
      container.append(dot);
      dots.set(bib, dot);
    }
    return dot;
  }

  /** Place the riders (the first given is drawn on top); others' dots go. */
  show(riders) {
    const geometry = this.geometry;
    const shown = new Set();
    if (geometry) {
      riders.forEach((rider, i) => {
        shown.add(rider.bib);
        // The first given is drawn on top, and a selected rider above everyone.
        const layer = String(rider.classes?.selected ? riders.length + 1 : riders.length - i);
        const style = (dot) => {
          for (const name of DOT_CLASSES) {
            dot.classList.toggle(name, Boolean(rider.classes?.[name]));
          }
          if (dot.title !== (rider.title || "")) dot.title = rider.title || "";
          if (dot.style.zIndex !== layer) dot.style.zIndex = layer;
        };
        if (this.projection) {
          const dot = this.dot(this.mapDots, this.map.riders, rider.bib);
          const [x, y] = this.projection.project(rider.lat_e7 / 1e7, rider.lon_e7 / 1e7);
          place(dot, (x / this.projection.width) * 100, (y / this.projection.height) * 100);
          style(dot);
        }
        const onProfile = this.dot(this.profileDots, this.profile.riders, rider.bib);
        const along = Math.min(Math.max(rider.progress_m, 0), geometry.finish);
        const middle = (this.elevation.min + this.elevation.max) / 2;
        const ele = geometry.elevationAt(along) ?? middle;
        const xPct = geometry.finish > 0 ? (along / geometry.finish) * 100 : 0;
        place(onProfile, xPct, (this.elevationY(ele) / PROFILE_H) * 100);
        style(onProfile);
      });
    }
    for (const dots of [this.mapDots, this.profileDots]) {
      for (const [bib, dot] of dots) {
        if (!shown.has(bib)) {
          dot.remove();
          dots.delete(bib);
        }
      }
    }
  }
}
