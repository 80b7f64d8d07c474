// The rolling 24-hour statistics and the 1-minute candle chart (docs/analytics.md), read once
// over REST and then kept live by the socket:
//   GET /ticker/24h?instrument=SYM -> {open, high, low, last, volume, change, change_percent}
//   WS channel ticker_24h          -> {event: "ticker_24h", ...the same fields}
//   GET /klines?instrument=SYM&interval=1m&limit=500 -> [{open_time (Unix ms), open, high, low,
//       close, volume, ...}, ...] oldest first
//   WS channel candles, interval 1m -> {event: "candle", interval, open_time, open, ...}
// A part whose endpoint does not answer 200 stays hidden. Decimals are strings as everywhere;
// they become floats only inside the chart, to draw.
const TICKER_REFRESH_MS = 60000;
const CHART_URL = "/static/vendor/lightweight-charts-5.2.1/lightweight-charts.standalone.production.js";
export const CANDLE_INTERVAL = "1m";

export class DayTicker {
  constructor(root, rest, instrument) {
    this.root = root;
    this.rest = rest;
    this.instrument = instrument;
  }

  async refresh() {
    let day = null;
    try {
      day = await this.rest.optional(`/ticker/24h?instrument=${encodeURIComponent(this.instrument)}`);
    } catch {
      day = null; // anything but 200 keeps it hidden
    }
    if (day !== null) this.show(day);
    else this.root.hidden = true;
    return day !== null;
  }

  /** The statistics from GET /ticker/24h or a `ticker_24h` event. */
  show(day) {
    this.root.hidden = false;
    for (const name of ["change", "change_percent", "high", "low", "volume"]) {
      const node = this.root.querySelector(`[data-field="${name}"]`);
      if (node) node.textContent = day[name] ?? "–";
    }
    const change = String(day.change ?? "");
    this.root.classList.toggle("up", change !== "" && !change.startsWith("-") && !/^[0.]*$/.test(change));
    this.root.classList.toggle("down", change.startsWith("-"));
  }

  start() {
    this.refresh();
    setInterval(() => this.refresh(), TICKER_REFRESH_MS);
  }
}

function toTime(openTime) {
  const ms = typeof openTime === "number" ? openTime : Date.parse(openTime);
  return Math.floor(ms / 1000);
}

function toBar(candle) {
  return { time: toTime(candle.open_time), open: Number(candle.open), high: Number(candle.high),
           low: Number(candle.low), close: Number(candle.close) };
}

export class Candles {
  constructor(root, rest, instrument) {
    this.root = root;
    this.rest = rest;
    this.instrument = instrument;
    this.series = null;
  }

  /** True when /klines exists and the chart is drawn; false (hidden) otherwise. */
  async start() {
    const query = new URLSearchParams({ instrument: this.instrument, interval: CANDLE_INTERVAL, limit: "500" });
    let klines = null;
    try {
      klines = await this.rest.optional(`/klines?${query}`);
    } catch {
      klines = null;
    }
    if (!Array.isArray(klines)) {
      this.root.hidden = true;
      return false;
    }
    this.root.hidden = false;
    const charts = await import(CHART_URL);
    const chart = charts.createChart(this.root.querySelector(".chart"), {
      autoSize: true, layout: { background: { color: "transparent" }, textColor: "#c4cad8" },
      grid: { vertLines: { color: "#232838" }, horzLines: { color: "#232838" } },
      timeScale: { timeVisible: true, secondsVisible: false },
    });
    this.series = chart.addSeries(charts.CandlestickSeries, {
      upColor: "#26a69a", downColor: "#ef5350", wickUpColor: "#26a69a", wickDownColor: "#ef5350", borderVisible: false,
    });
    this.series.setData(klines.map(toBar));
    return true;
  }

  /** A `candle` event from the socket. */
  update(event) {
    if (this.series && event.interval === CANDLE_INTERVAL) this.series.update(toBar(event));
  }

  /** What the chart holds: its bars, and the last one's close (for people and tests). */
  state() {
    const bars = this.series ? this.series.data() : [];
    return { bars: bars.length, lastClose: bars.length ? bars[bars.length - 1].close : null };
  }
}
