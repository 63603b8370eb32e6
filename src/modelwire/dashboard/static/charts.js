// Small time-series charts drawn on <canvas>: no library, sized for the device's pixel ratio.
//
// A chart keeps the last `capacity` samples of each series (null = no data: the line breaks there), scales
// the y axis to a round maximum, and redraws on every push and on resize. Colours come from CSS custom
// properties, so the light and dark themes restyle charts without any code here. For tests and assistive
// technology the canvas carries data-points, data-latest and an aria-label with the latest values.

const NICE_STEPS = [1, 2, 2.5, 5, 10];

export function niceMax(value) {
  if (!(value > 0)) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  const step = NICE_STEPS.find((s) => s * magnitude >= value) ?? 10;
  return step * magnitude;
}

export function formatNumber(value, unit = "") {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  const abs = Math.abs(value);
  let text;
  if (abs >= 1e6) text = (value / 1e6).toFixed(1) + "M";
  else if (abs >= 1e4) text = (value / 1e3).toFixed(1) + "k";
  else if (abs >= 100) text = value.toFixed(0);
  else if (abs >= 10) text = value.toFixed(1);
  else text = value.toFixed(2).replace(/\.?0+$/, "") || "0";
  return unit ? `${text} ${unit}` : text;
}

export class TimeChart {
  // series: [{key, label, color: "--css-var", fill: bool}]
  constructor(canvas, series, { capacity = 90, unit = "", label = "" } = {}) {
    this.canvas = canvas;
    this.series = series;
    this.capacity = capacity;
    this.unit = unit;
    this.label = label;
    this.values = new Map(series.map((s) => [s.key, []]));
    this.count = 0;
    this.ctx = canvas.getContext("2d");
    canvas.setAttribute("role", "img");
    this._resize = new ResizeObserver(() => this.draw());
    this._resize.observe(canvas);
    this._describe();
  }

  push(sample) {
    for (const s of this.series) {
      const list = this.values.get(s.key);
      const value = sample[s.key];
      list.push(typeof value === "number" && Number.isFinite(value) ? value : null);
      if (list.length > this.capacity) list.shift();
    }
    this.count += 1;
    this.draw();
    this._describe();
  }

  latest(key) {
    const list = this.values.get(key ?? this.series[0].key);
    return list.length ? list[list.length - 1] : null;
  }

  _describe() {
    const parts = this.series.map((s) => `${s.label} ${formatNumber(this.latest(s.key), this.unit)}`);
    this.canvas.setAttribute("aria-label", `${this.label}: ${parts.join(", ")}`);
    this.canvas.dataset.points = String(this.count);
    const first = this.latest(this.series[0].key);
    this.canvas.dataset.latest = first === null ? "" : String(first);
  }

  draw() {
    const { canvas, ctx } = this;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);

    const style = getComputedStyle(canvas);
    const grid = style.getPropertyValue("--chart-grid").trim() || "rgba(128,128,128,.2)";
    const muted = style.getPropertyValue("--chart-label").trim() || "gray";
    let max = 0;
    for (const list of this.values.values()) for (const v of list) if (v !== null && v > max) max = v;
    const top = niceMax(max);
    const padTop = 14;
    const plotH = height - padTop - 2;
    const stepX = width / Math.max(1, this.capacity - 1);

    ctx.strokeStyle = grid;
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (const f of [0, 0.5, 1]) {
      const y = Math.round(padTop + plotH * f) + 0.5;
      ctx.moveTo(0, y);
      ctx.lineTo(width, y);
    }
    ctx.stroke();
    ctx.fillStyle = muted;
    ctx.font = "10px system-ui, sans-serif";
    ctx.textBaseline = "top";
    ctx.fillText(formatNumber(top, this.unit), 2, 1);

    for (const s of this.series) {
      const list = this.values.get(s.key);
      const color = style.getPropertyValue(s.color).trim() || "steelblue";
      const x0 = width - (list.length - 1) * stepX;
      const y = (v) => padTop + plotH * (1 - v / top);
      const runs = [];
      let run = [];
      list.forEach((v, i) => {
        if (v === null) {
          if (run.length) runs.push(run);
          run = [];
        } else run.push([x0 + i * stepX, y(v)]);
      });
      if (run.length) runs.push(run);
      for (const points of runs) {
        if (s.fill && points.length > 1) {
          const gradient = ctx.createLinearGradient(0, padTop, 0, height);
          gradient.addColorStop(0, withAlpha(color, 0.28));
          gradient.addColorStop(1, withAlpha(color, 0.02));
          ctx.fillStyle = gradient;
          ctx.beginPath();
          ctx.moveTo(points[0][0], padTop + plotH);
          for (const [px, py] of points) ctx.lineTo(px, py);
          ctx.lineTo(points[points.length - 1][0], padTop + plotH);
          ctx.closePath();
          ctx.fill();
        }
        ctx.strokeStyle = color;
        ctx.lineWidth = 1.75;
        ctx.lineJoin = "round";
        ctx.beginPath();
        points.forEach(([px, py], i) => (i ? ctx.lineTo(px, py) : ctx.moveTo(px, py)));
        if (points.length === 1) ctx.arc(points[0][0], points[0][1], 1.5, 0, Math.PI * 2);
        ctx.stroke();
      }
    }
  }
}

function withAlpha(color, alpha) {
  const hex = color.match(/^#([0-9a-f]{6})$/i);
  if (!hex) return color;
  const n = parseInt(hex[1], 16);
  return `rgba(${n >> 16}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}
