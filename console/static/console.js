// The console's only script (no inline script: the CSP forbids it).
// Wallboard: refresh the tiles every 5 s without reloading; full-screen mode.
// Reports and campaigns: draw the charts from the JSON the page carries.
"use strict";

function startWallboard(box) {
  const url = box.getAttribute("data-refresh");
  async function refresh() {
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } });
      if (response.redirected || response.status === 401 || response.status === 303) {
        window.location.assign("/ui/login?next=/ui/");
        return;
      }
      if (response.ok) {
        box.innerHTML = await response.text();
      }
    } catch (e) {
      // The server is restarting or the network is down: the next tick tries again.
    }
  }
  window.setInterval(refresh, 5000);
  const button = document.getElementById("fullscreen");
  if (button) {
    button.addEventListener("click", () => {
      document.body.classList.toggle("tv");
      if (document.fullscreenElement) {
        document.exitFullscreen();
      } else if (document.documentElement.requestFullscreen) {
        document.documentElement.requestFullscreen().catch(() => {});
      }
    });
  }
}

const PALETTE = ["#0a58ca", "#1a7f37", "#b42318", "#8250df", "#bf8700", "#0969da", "#cf222e", "#57606a"];

function drawReports(data) {
  if (typeof window.Chart === "undefined" || data.labels.length === 0) {
    return;
  }
  const volume = document.getElementById("volume-chart");
  const colors = { offered: "#0a58ca", answered: "#1a7f37", abandoned: "#b42318" };
  new window.Chart(volume, {
    type: "bar",
    data: {
      labels: data.labels,
      datasets: Object.keys(data.series).map((k) => ({ label: data.names[k], data: data.series[k], backgroundColor: colors[k] })),
    },
    options: { animation: false, responsive: true, maintainAspectRatio: false, scales: { y: { beginAtZero: true } } },
  });
  const sl = document.getElementById("sl-chart");
  new window.Chart(sl, {
    type: "line",
    data: {
      labels: data.labels,
      datasets: Object.keys(data.service_level).map((name, i) => ({
        label: name, data: data.service_level[name], borderColor: PALETTE[i % PALETTE.length],
        backgroundColor: PALETTE[i % PALETTE.length], spanGaps: true,
      })),
    },
    options: { animation: false, responsive: true, maintainAspectRatio: false, scales: { y: { min: 0, max: 100 } } },
  });
}

function drawCampaigns(data) {
  if (typeof window.Chart === "undefined" || data.labels.length === 0) {
    return;
  }
  const colors = { attempts: "#0a58ca", contacts_dialled: "#8250df", connected_contacts: "#1a7f37" };
  new window.Chart(document.getElementById("attempts-chart"), {
    type: "bar",
    data: {
      labels: data.labels,
      datasets: data.order.map((k) => ({ label: data.names[k], data: data.series[k], backgroundColor: colors[k] })),
    },
    options: { animation: false, responsive: true, maintainAspectRatio: false, scales: { y: { beginAtZero: true } } },
  });
  new window.Chart(document.getElementById("penetration-chart"), {
    type: "line",
    data: {
      labels: data.labels,
      datasets: Object.keys(data.penetration).map((name, i) => ({
        label: name, data: data.penetration[name], borderColor: PALETTE[i % PALETTE.length],
        backgroundColor: PALETTE[i % PALETTE.length], spanGaps: true,
      })),
    },
    options: { animation: false, responsive: true, maintainAspectRatio: false, scales: { y: { min: 0, max: 100 } } },
  });
}

// The chart library is loaded only by the pages that draw.
function withCharts(element, draw) {
  const script = document.createElement("script");
  script.src = "/ui/static/chart.umd.min.js";
  script.addEventListener("load", () => draw(JSON.parse(element.textContent)));
  document.head.appendChild(script);
}

document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("wallboard");
  if (box) {
    startWallboard(box);
  }
  const report = document.getElementById("report-data");
  if (report) {
    withCharts(report, drawReports);
  }
  const campaigns = document.getElementById("campaign-data");
  if (campaigns) {
    withCharts(campaigns, drawCampaigns);
  }
});
