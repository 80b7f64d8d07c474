// Exact decimals for the page. Prices and quantities arrive as fixed-point strings on the
// instrument's grid; they are compared, summed and subtracted here as BigInt counts of the
// smallest unit, never as binary floats. Numbers only become floats to place pixels.

/** Decimal places of a step such as "0.01" (2) or "1" (0). */
export function decimalsOf(step) {
  const text = String(step);
  const dot = text.indexOf(".");
  return dot < 0 ? 0 : text.length - dot - 1;
}

/** "123.45" with 2 decimals -> 12345n. The string must have at most `decimals` decimals. */
export function toUnits(text, decimals) {
  const negative = text.startsWith("-");
  const body = negative ? text.slice(1) : text;
  const [whole, frac = ""] = body.split(".");
  if (frac.length > decimals) throw new RangeError(`${text} has more than ${decimals} decimals`);
  const units = BigInt((whole || "0") + frac.padEnd(decimals, "0"));
  return negative ? -units : units;
}

/** 12345n with 2 decimals -> "123.45" (fixed-point, always `decimals` decimals). */
export function fromUnits(units, decimals) {
  const negative = units < 0n;
  const digits = (negative ? -units : units).toString().padStart(decimals + 1, "0");
  const text = decimals ? `${digits.slice(0, -decimals)}.${digits.slice(-decimals)}` : digits;
  return negative ? `-${text}` : text;
}

/** A BigInt ratio as a float in [0, 1], for drawing only. */
export function ratio(part, whole) {
  if (whole <= 0n) return 0;
  return Number((part * 1000000n) / whole) / 1000000;
}

// CRC-32 (IEEE 802.3, the polynomial of zlib.crc32), as the server computes it.
const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

export function crc32(text) {
  let crc = 0xffffffff;
  for (let i = 0; i < text.length; i++) {
    // The checksum's input is digits only (ASCII), so one char is one byte.
    crc = CRC_TABLE[(crc ^ text.charCodeAt(i)) & 0xff] ^ (crc >>> 8);
  }
  return (crc ^ 0xffffffff) >>> 0;
}

export const CHECKSUM_DEPTH = 10;

function levelDigits(value) {
  return value.replace(".", "").replace(/^0+/, "");
}

/** marketdata/checksum.py: the 10 best asks (lowest first), then the 10 best bids (highest
 * first), each price and quantity without its point and leading zeros, CRC32 of it all.
 * asks, bids: arrays of [price, quantity] strings, best first. */
export function bookChecksum(asks, bids) {
  const parts = [];
  for (const levels of [asks, bids]) {
    for (const [price, qty] of levels.slice(0, CHECKSUM_DEPTH)) {
      parts.push(levelDigits(price), levelDigits(qty));
    }
  }
  return crc32(parts.join(""));
}
