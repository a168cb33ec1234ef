// Draws the report's charts with Chart.js and makes tables sortable. The
// data is the CHARTS object written by the report generator; nothing is
// fetched. When every chart is drawn, body[data-charts] becomes "drawn".
(function () {
  'use strict';
  const C = CHARTS;
  const colors = {
    misreporting: '#c62828', suspect: '#ef6c00', ok: '#2e7d32',
    unverifiable: '#757575', unreported: '#9e9e9e'
  };
  Chart.defaults.animation = false;
  Chart.defaults.font.family = 'system-ui, "DejaVu Sans", sans-serif';
  Chart.defaults.color = '#333';

  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  function iec(b) {
    let u = 0;
    b = Math.abs(b);
    while (b >= 1024 && u < units.length - 1) { b /= 1024; u++; }
    return (u === 0 ? b.toFixed(0) : b.toFixed(1)) + ' ' + units[u];
  }
  function pad(n) { return String(n).padStart(2, '0'); }
  function clock(ms) {
    if (ms === undefined) return '';
    const d = new Date(ms);
    const hms = pad(d.getUTCHours()) + ':' + pad(d.getUTCMinutes());
    if (C.span < 120) return hms + ':' + pad(d.getUTCSeconds()) + '.' + Math.floor(d.getUTCMilliseconds() / 100);
    if (C.span <= 86400) return hms + ':' + pad(d.getUTCSeconds());
    return pad(d.getUTCMonth() + 1) + '-' + pad(d.getUTCDate()) + ' ' + hms;
  }
  function verdictColor(v) { return colors[v] || colors.unreported; }

  let drawn = 0;
  function done(id) {
    document.getElementById(id).dataset.drawn = 'true';
    drawn++;
  }

  // The swarm over time.
  new Chart('chart-swarm', {
    type: 'line',
    data: {
      labels: C.times.map(clock),
      datasets: [
        { label: 'peers present', data: C.peers, borderColor: '#1565c0', backgroundColor: '#1565c0', yAxisID: 'y' },
        { label: 'seeders', data: C.seeders, borderColor: '#2e7d32', backgroundColor: '#2e7d32', yAxisID: 'y' },
        { label: 'identities announcing', data: C.announcing, borderColor: '#6a1b9a', backgroundColor: '#6a1b9a', borderDash: [6, 3], yAxisID: 'y' },
        { label: 'mean copies per piece', data: C.copies, borderColor: '#00838f', backgroundColor: '#00838f', borderDash: [2, 2], yAxisID: 'y' },
        { label: 'pieces available (right axis)', data: C.pieces_available, borderColor: '#ef6c00', backgroundColor: '#ef6c00', borderWidth: 3, yAxisID: 'y1' }
      ]
    },
    options: {
      responsive: true, maintainAspectRatio: false,
      interaction: { mode: 'index', intersect: false },
      elements: { point: { radius: 0, hitRadius: 6 }, line: { borderWidth: 2, tension: 0 } },
      scales: {
        x: { title: { display: true, text: 'time (UTC)' }, ticks: { maxTicksLimit: 12 } },
        y: { beginAtZero: true, title: { display: true, text: 'peers' }, ticks: { precision: 0 } },
        y1: {
          position: 'right', min: 0, max: Math.max(C.num_pieces, 1),
          title: { display: true, text: 'pieces available (of ' + C.num_pieces + ')' },
          grid: { drawOnChartArea: false }
        }
      }
    }
  });
  done('chart-swarm');

  // Measured upload capacity against the claimed upload rate.
  const bars = C.bars;
  const rates = bars.flatMap(b => [b.capacity, b.rate]).filter(v => v > 0);
  const logScale = rates.length > 0 && Math.max(...rates) / Math.min(...rates) > 100;
  new Chart('chart-capacity', {
    type: 'bar',
    data: {
      labels: bars.map(b => (b.flagged ? '⚠ ' : '') + b.label),
      datasets: [
        { label: 'measured upload capacity (upper estimate)', data: bars.map(b => b.capacity), backgroundColor: '#78909c' },
        {
          label: 'reported upload rate', data: bars.map(b => b.rate),
          backgroundColor: bars.map(b => b.flagged ? verdictColor(b.verdict) : '#1565c0')
        }
      ]
    },
    options: {
      indexAxis: 'y', responsive: true, maintainAspectRatio: false,
      plugins: {
        tooltip: {
          callbacks: {
            label: ctx => {
              const b = bars[ctx.dataIndex];
              if (ctx.datasetIndex === 0) {
                return b.capacity > 0 ? 'capacity ≤ ' + iec(b.capacity) + '/s (median ' + iec(b.central) + '/s)' : 'capacity not measured';
              }
              return 'claimed ' + iec(b.rate) + '/s · ' + b.verdict;
            }
          }
        }
      },
      scales: {
        x: {
          type: logScale ? 'logarithmic' : 'linear', beginAtZero: !logScale,
          title: { display: true, text: 'bytes per second' + (logScale ? ' (log scale)' : '') },
          ticks: { callback: v => iec(v) + '/s', maxTicksLimit: 8 }
        },
        y: { ticks: { color: ctx => (bars[ctx.index] && bars[ctx.index].flagged) ? verdictColor(bars[ctx.index].verdict) : '#333', font: { family: 'monospace' } } }
      }
    }
  });
  done('chart-capacity');

  // Pieces held per peer over time.
  const heat = C.heat;
  const nb = C.times.length;
  const cells = [];
  heat.forEach(h => {
    h.series.forEach((v, k) => {
      if (v !== null && k < nb) cells.push({ x: k, y: h.label, v: C.num_pieces > 0 ? v / C.num_pieces : 0, n: v, flagged: h.flagged });
    });
  });
  new Chart('chart-heatmap', {
    type: 'matrix',
    data: {
      datasets: [{
        label: 'share of pieces held',
        data: cells,
        backgroundColor: ctx => {
          const c = ctx.raw;
          if (!c) return 'transparent';
          const a = (0.08 + 0.92 * c.v).toFixed(3);
          return c.flagged ? 'rgba(198,40,40,' + a + ')' : 'rgba(21,101,192,' + a + ')';
        },
        borderWidth: 0,
        width: ({ chart }) => Math.max(1, ((chart.chartArea || {}).width || 0) / Math.max(nb, 1) - 1),
        height: ({ chart }) => Math.max(1, ((chart.chartArea || {}).height || 0) / Math.max(heat.length, 1) - 1)
      }]
    },
    options: {
      responsive: true, maintainAspectRatio: false,
      plugins: {
        legend: { display: false },
        tooltip: {
          callbacks: {
            title: items => items.length ? items[0].raw.y : '',
            label: ctx => clock(C.times[ctx.raw.x]) + ': ' + ctx.raw.n + ' of ' + C.num_pieces + ' pieces'
          }
        }
      },
      scales: {
        x: {
          type: 'linear', min: -0.5, max: Math.max(nb, 1) - 0.5, offset: false,
          title: { display: true, text: 'time (UTC)' },
          grid: { display: false },
          ticks: { maxTicksLimit: 12, callback: v => Number.isInteger(v) ? clock(C.times[v]) : '' }
        },
        y: {
          type: 'category', labels: heat.map(h => h.label), offset: true, grid: { display: false },
          ticks: { autoSkip: false, font: { family: 'monospace' }, color: ctx => (heat[ctx.index] && heat[ctx.index].flagged) ? colors.misreporting : '#333' }
        }
      }
    }
  });
  done('chart-heatmap');

  // The transfer matrix: sender (y) × receiver (x), shaded by the
  // plausible upper bound.
  const fl = C.flow_labels;
  const maxUp = C.flows.reduce((m, f) => Math.max(m, f.plausible), 0);
  new Chart('chart-flows', {
    type: 'matrix',
    data: {
      datasets: [{
        label: 'could have sent',
        data: C.flows.map(f => ({ x: fl[f.to], y: fl[f.from], lower: f.lower, upper: f.upper, plausible: f.plausible })),
        backgroundColor: ctx => {
          const c = ctx.raw;
          if (!c || maxUp <= 0) return 'transparent';
          return 'rgba(21,101,192,' + (0.08 + 0.92 * c.plausible / maxUp).toFixed(3) + ')';
        },
        borderWidth: 0,
        width: ({ chart }) => Math.max(1, ((chart.chartArea || {}).width || 0) / Math.max(fl.length, 1) - 1),
        height: ({ chart }) => Math.max(1, ((chart.chartArea || {}).height || 0) / Math.max(fl.length, 1) - 1)
      }]
    },
    options: {
      responsive: true, maintainAspectRatio: false,
      plugins: {
        legend: { display: false },
        tooltip: {
          callbacks: {
            title: items => items.length ? items[0].raw.y + ' → ' + items[0].raw.x : '',
            label: ctx => 'between ' + iec(ctx.raw.lower) + ' and ' + iec(ctx.raw.upper) + '; plausibly at most ' + iec(ctx.raw.plausible)
          }
        }
      },
      scales: {
        x: { type: 'category', labels: fl, offset: true, grid: { display: false }, title: { display: true, text: 'receiver' },
             ticks: { autoSkip: false, maxRotation: 90, font: { family: 'monospace' } } },
        y: { type: 'category', labels: fl, offset: true, grid: { display: false }, title: { display: true, text: 'sender' },
             ticks: { autoSkip: false, font: { family: 'monospace' } } }
      }
    }
  });
  done('chart-flows');

  // Sortable tables: click a header; numbers sort by their data-v value.
  function key(cell) {
    const v = cell.dataset.v !== undefined ? cell.dataset.v : cell.textContent.trim();
    const f = Number(v);
    return v !== '' && !Number.isNaN(f) ? f : v.toLowerCase();
  }
  function sortBy(table, i, th) {
    const dir = th.getAttribute('aria-sort') === 'ascending' ? -1 : 1;
    for (const o of table.tHead.rows[0].cells) o.removeAttribute('aria-sort');
    th.setAttribute('aria-sort', dir > 0 ? 'ascending' : 'descending');
    const body = table.tBodies[0];
    const rows = Array.from(body.rows);
    rows.sort((a, b) => {
      const x = key(a.cells[i]), y = key(b.cells[i]);
      if (typeof x === 'number' && typeof y === 'number') return (x - y) * dir;
      return String(x).localeCompare(String(y)) * dir;
    });
    rows.forEach(r => body.appendChild(r));
  }
  document.querySelectorAll('table.sortable').forEach(table => {
    Array.from(table.tHead.rows[0].cells).forEach((th, i) => {
      th.tabIndex = 0;
      th.addEventListener('click', () => sortBy(table, i, th));
      th.addEventListener('keydown', e => { if (e.key === 'Enter') sortBy(table, i, th); });
    });
  });
  const only = document.getElementById('flagged-only');
  only.addEventListener('change', () => document.getElementById('peers').classList.toggle('only-flagged', only.checked));

  document.body.dataset.charts = drawn === 4 ? 'drawn' : 'partial';
})();
