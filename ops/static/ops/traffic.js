// The live traffic page (ops/admin/traffic.py): draws the per-minute charts with uPlot
// from the page's json_script data, and every data-refresh-seconds fetches the same URL,
// swaps the #traffic-live part (tables and data) in and redraws the charts.
// No inline script: the Content-Security-Policy allows scripts from our static files only.
(function () {
  "use strict";

  const charts = [];
  const POINTS = { show: true, size: 4 };

  function readData(root) {
    const node = root.getElementById("traffic-data");
    return node ? JSON.parse(node.textContent) : null;
  }

  function width(target) {
    return Math.max(300, target.parentElement.clientWidth - 14);
  }

  function chart(id, series, values, axisLabel) {
    const target = document.getElementById(id);
    const options = {
      width: width(target),
      height: 190,
      series: [{}].concat(series),
      scales: { y: { range: (u, min, max) => [0, Math.max(max || 0, axisLabel === "%" ? 100 : 1)] } },
      axes: [{}, { label: axisLabel, size: 50 }],
      legend: { live: true },
    };
    const plot = new uPlot(options, values, target);
    charts.push({ plot, target });
    return plot;
  }

  function columns(data) {
    return {
      calls: [data.t, data.attempts, data.answered],
      asr: [data.t, data.asr],
      acd: [data.t, data.acd],
    };
  }

  let byName = {};

  function draw(data) {
    const c = columns(data);
    byName = {
      calls: chart(
        "chart-calls",
        [
          { label: "attempts", stroke: "#417690", fill: "rgba(65,118,144,0.15)" },
          { label: "answered", stroke: "#2b8a3e" },
        ],
        c.calls,
        "calls"
      ),
      // Minutes without attempts have no ASR or ACD (null: a gap); points show the
      // minutes that stand alone between gaps, which a line alone would not draw.
      asr: chart("chart-asr", [{ label: "ASR %", stroke: "#8a6d3b", points: POINTS }], c.asr, "%"),
      acd: chart("chart-acd", [{ label: "ACD s", stroke: "#6f42c1", points: POINTS }], c.acd, "s"),
    };
  }

  function update(data) {
    const c = columns(data);
    Object.keys(byName).forEach((name) => byName[name].setData(c[name]));
  }

  async function refresh() {
    const response = await fetch(window.location.href, {
      credentials: "same-origin",
      headers: { "X-Requested-With": "fetch" },
    });
    if (!response.ok || response.redirected) {
      return false; // logged out, or the page is gone: keep what is shown
    }
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    const live = fresh.getElementById("traffic-live");
    const data = readData(fresh);
    if (!live || !data) {
      return false;
    }
    document.getElementById("traffic-live").replaceWith(document.adoptNode(live));
    update(data);
    document.body.dataset.trafficRefreshed = String(Number(document.body.dataset.trafficRefreshed || 0) + 1);
    return true;
  }

  function start() {
    const holder = document.getElementById("traffic-charts");
    const data = readData(document);
    if (!holder || !data || typeof uPlot === "undefined") {
      return;
    }
    draw(data);
    document.body.dataset.trafficCharts = "drawn";
    window.addEventListener("resize", () =>
      charts.forEach(({ plot, target }) => plot.setSize({ width: width(target), height: 190 }))
    );
    const seconds = Number(holder.dataset.refreshSeconds) || 30;
    window.setInterval(() => refresh().catch(() => false), seconds * 1000);
    window.opsTraffic = { refresh }; // for the browser tests: refresh now
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
