// The two pictures of the UI, drawn as inline SVG with the DOM (no library,
// nothing inline for the content security policy to refuse): an image's
// size broken down by layer, and a repository's tags on a timeline.

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attributes = {}, children = []) {
  const element = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  for (const child of children) element.append(child);
  return element;
}

function titled(element, text) {
  element.append(svg("title", {}, [text]));
  return element;
}

/** Bytes as people read them (KiB, MiB, ...). */
export function formatBytes(bytes) {
  if (bytes == null) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/**
 * One horizontal bar, a segment per layer in proportion to its size, with a
 * legend: where an image's bytes are.
 */
export function sizeBar(layers) {
  const total = layers.reduce((sum, layer) => sum + layer.size, 0) || 1;
  const width = 600;
  const bar = svg("svg", { viewBox: `0 0 ${width} 28`, preserveAspectRatio: "none", class: "size-bar", role: "img", "aria-label": "size by layer" });
  let x = 0;
  layers.forEach((layer, index) => {
    const w = Math.max(1, (layer.size / total) * width);
    bar.append(titled(svg("rect", { x, y: 0, width: w, height: 28, class: `seg seg-${index % 8}` }), `${layer.label}: ${formatBytes(layer.size)}`));
    x += w;
  });
  const legend = document.createElement("ol");
  legend.className = "legend";
  layers.forEach((layer, index) => {
    const item = document.createElement("li");
    const swatch = svg("svg", { viewBox: "0 0 10 10", width: 10, height: 10 }, [svg("rect", { width: 10, height: 10, class: `seg seg-${index % 8}` })]);
    const percent = ((layer.size / total) * 100).toFixed(1);
    item.append(swatch, ` ${layer.label} — ${formatBytes(layer.size)} (${percent}%)`);
    legend.append(item);
  });
  const figure = document.createElement("figure");
  figure.className = "chart";
  figure.append(bar, legend);
  return figure;
}

/**
 * Tags on a time axis by when they were pushed, one dot each (signed ones
 * ringed), labelled: a repository's history at a glance.
 */
export function timeline(tags) {
  const dated = tags.filter((tag) => tag.pushed_ms).sort((a, b) => a.pushed_ms - b.pushed_ms);
  if (dated.length === 0) return null;
  const [width, height, pad] = [760, 96, 40];
  const first = dated[0].pushed_ms;
  const last = dated[dated.length - 1].pushed_ms;
  const span = Math.max(last - first, 1);
  const xOf = (ms) => (dated.length === 1 ? width / 2 : pad + ((ms - first) / span) * (width - 2 * pad));
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "timeline", role: "img", "aria-label": "tags by push time" });
  chart.append(svg("line", { x1: pad / 2, x2: width - pad / 2, y1: 56, y2: 56, class: "axis" }));
  dated.forEach((tag, index) => {
    const x = xOf(tag.pushed_ms);
    const dot = svg("circle", { cx: x, cy: 56, r: 6, class: tag.signed ? "dot signed" : "dot" });
    chart.append(titled(dot, `${tag.tag} — ${new Date(tag.pushed_ms).toLocaleString()}`));
    const label = svg("text", { x, y: index % 2 ? 84 : 38, "text-anchor": "middle", class: "label" }, [tag.tag]);
    chart.append(label);
  });
  const dates = [first, last].filter((ms, i, all) => all.indexOf(ms) === i);
  // Within two days the time of day says more than the date.
  const format = (ms) => (span < 2 * 86400e3 ? new Date(ms).toLocaleString() : new Date(ms).toLocaleDateString());
  dates.forEach((ms, i) => {
    const anchor = dates.length === 1 ? "middle" : i === 0 ? "start" : "end";
    chart.append(svg("text", { x: dates.length === 1 ? width / 2 : i === 0 ? pad / 2 : width - pad / 2, y: 12, "text-anchor": anchor, class: "date" }, [format(ms)]));
  });
  const figure = document.createElement("figure");
  figure.className = "chart";
  figure.append(chart);
  return figure;
}
