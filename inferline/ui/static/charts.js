// Charts of the Analytics page, drawn by the vendored Chart.js from the JSON in each canvas's
// data-chart attribute (no inline script: the Content-Security-Policy forbids it).
"use strict";

const PALETTE = ["#3559e0", "#f0b429", "#3ebd6e", "#d64545", "#8e6ad8", "#20a4b8", "#9aa1ad"];

function money(value) {
  return "$" + Number(value).toLocaleString(undefined, { maximumFractionDigits: 6 });
}

function timeLabel(iso) {
  return new Date(iso).toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

function datasets(spec) {
  return Object.entries(spec.series).map(([name, values], i) => {
    const color = PALETTE[i % PALETTE.length];
    const base = { label: name, data: values, borderColor: color, backgroundColor: color };
    if (spec.kind === "bar-line" && i === 1) {
      return { ...base, type: "line", yAxisID: "rate", pointRadius: 0, spanGaps: true };
    }
    if (spec.kind === "line") return { ...base, pointRadius: 0, spanGaps: true, fill: false };
    return base;
  });
}

function options(spec) {
  const stacked = spec.kind === "stacked-bar";
  const scales = {
    x: { stacked, ticks: { maxTicksLimit: 12 } },
    y: { stacked, beginAtZero: true, ticks: spec.unit === "usd" ? { callback: money } : {} },
  };
  if (spec.kind === "bar-line") {
    scales.rate = { position: "right", min: 0, max: 100, grid: { drawOnChartArea: false } };
  }
  return {
    animation: false,
    responsive: true,
    maintainAspectRatio: false,
    interaction: { mode: "index", intersect: false },
    scales,
    plugins: {
      legend: { position: "bottom" },
      tooltip: spec.unit === "usd" ? { callbacks: { label: (c) => `${c.dataset.label}: ${money(c.parsed.y)}` } } : {},
    },
  };
}

function drawCharts(root) {
  if (typeof Chart === "undefined") return;
  for (const canvas of root.querySelectorAll("canvas[data-chart]")) {
    if (Chart.getChart(canvas)) continue;
    const spec = JSON.parse(canvas.dataset.chart);
    new Chart(canvas, {
      type: spec.kind === "line" ? "line" : "bar",
      data: { labels: spec.labels.map(timeLabel), datasets: datasets(spec) },
      options: options(spec),
    });
  }
}

function destroyCharts(root) {
  if (typeof Chart === "undefined") return;
  for (const canvas of root.querySelectorAll("canvas[data-chart]")) {
    const chart = Chart.getChart(canvas);
    if (chart) chart.destroy();
    // htmx "settles" a swapped-in element by copying the old one's style attribute onto it with
    // setAttribute, which the Content-Security-Policy blocks: the old canvas keeps none.
    canvas.removeAttribute("style");
  }
}

document.addEventListener("DOMContentLoaded", () => drawCharts(document));
// Auto-refresh swaps in a new main part: the old charts are let go, the new canvases drawn.
document.addEventListener("htmx:beforeSwap", (event) => destroyCharts(event.detail.target));
document.addEventListener("htmx:afterSettle", () => drawCharts(document));
