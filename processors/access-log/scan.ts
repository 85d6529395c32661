/**
 * Character-level scanning shared by the access-log formats: numbers, times, quoted
 * fields, hex escapes. Every function reads a span `s[start, end)` of the line in place
 * (charCodeAt, no intermediate strings) and returns NaN or -1 for "not that shape", so
 * the format scanning the line says which field broke.
 */

export const SPACE = 0x20;
export const QUOTE = 0x22;
export const PLUS = 0x2b;
export const MINUS = 0x2d;
export const DOT = 0x2e;
export const SLASH = 0x2f;
export const COLON = 0x3a;
export const COMMA = 0x2c;
export const BACKSLASH = 0x5c;
export const RBRACKET = 0x5d;

export const CLF_TIME_LEN = 26; // 26/Nov/2026:08:45:57 +0000
const MONTHS = 'JanFebMarAprMayJunJulAugSepOctNovDec';
const POW10 = [1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22];

/** Index after the last character that is not a line ending or a trailing space. */
export function trimmedEnd(s: string): number {
  let end = s.length;
  while (end > 0) {
    const c = s.charCodeAt(end - 1);
    if (c !== SPACE && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
    end--;
  }
  return end;
}

export function spaceOrEnd(s: string, from: number, end: number): number {
  const j = s.indexOf(' ', from);
  return j < 0 || j > end ? end : j;
}

export function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/**
 * `digits[.digits]` in s[start, end) times 10^pow10, computed from the digits so that
 * "0.029" seconds is exactly 29 ms; NaN if the text is not that shape.
 */
export function parseDecimal(s: string, start: number, end: number, pow10: number): number {
  let n = 0;
  let digits = 0;
  let frac = -1;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (isDigit(c)) {
      n = n * 10 + (c - 0x30);
      digits++;
      if (frac >= 0) frac++;
    } else if (c === DOT && frac < 0) {
      frac = 0;
    } else {
      return NaN;
    }
  }
  if (digits === 0) return NaN;
  // Past 15 digits the integer n is no longer exact; let the engine round the text.
  if (digits > 15) return Number(s.slice(start, end)) * 10 ** pow10;
  const shift = pow10 - (frac < 0 ? 0 : frac);
  return shift >= 0 ? n * (POW10[shift] ?? 10 ** shift) : n / (POW10[-shift] ?? 10 ** -shift);
}

/** An integer with an optional sign (HAProxy prints -1 for "not reached", + for logasap). */
export function parseSignedInt(s: string, start: number, end: number): number {
  let i = start;
  let sign = 1;
  const c0 = s.charCodeAt(i);
  if (c0 === MINUS) {
    sign = -1;
    i++;
  } else if (c0 === PLUS) {
    i++;
  }
  if (i >= end) return NaN;
  let n = 0;
  for (; i < end; i++) {
    const c = s.charCodeAt(i);
    if (!isDigit(c)) return NaN;
    n = n * 10 + (c - 0x30);
  }
  return sign * n;
}

/**
 * Sum of a list of times like nginx's `$upstream_response_time` ("0.010, 0.020 : 0.005",
 * one per upstream tried); `-` entries (never answered) count nothing. `null` if no
 * entry has a time, NaN if an entry is not a time.
 */
export function sumTimeList(s: string, start: number, end: number, pow10: number): number | null {
  let sum = 0;
  let any = false;
  let tok = -1;
  for (let i = start; i <= end; i++) {
    const c = i < end ? s.charCodeAt(i) : SPACE;
    if (c === SPACE || c === COMMA || c === COLON) {
      if (tok >= 0 && !(i - tok === 1 && s.charCodeAt(tok) === MINUS)) {
        const v = parseDecimal(s, tok, i, pow10);
        if (Number.isNaN(v)) return NaN;
        sum += v;
        any = true;
      }
      tok = -1;
    } else if (tok < 0) {
      tok = i;
    }
  }
  return any ? sum : null;
}

/** Index of the quote closing a field opened before `from`, skipping backslash-escaped quotes; -1 if none. */
export function closingQuote(s: string, from: number, end: number): number {
  let q = s.indexOf('"', from);
  while (q >= 0 && q < end) {
    let backslashes = 0;
    while (q - backslashes - 1 >= from && s.charCodeAt(q - backslashes - 1) === BACKSLASH) backslashes++;
    if (backslashes % 2 === 0) return q;
    q = s.indexOf('"', q + 1);
  }
  return -1;
}

export function twoDigits(s: string, i: number): number {
  return digitOrNeg(s.charCodeAt(i)) * 10 + digitOrNeg(s.charCodeAt(i + 1));
}

// Large enough that any non-digit makes a 2- or 4-digit group negative.
export function digitOrNeg(c: number): number {
  return isDigit(c) ? c - 0x30 : -1e6;
}

/** UTC ms of `dd/Mon/yyyy:HH:mm:ss` at s[p]; NaN if it is not that. */
export function parseDayTime(s: string, p: number): number {
  const day = twoDigits(s, p);
  const month = MONTHS.indexOf(s.slice(p + 3, p + 6));
  const year = twoDigits(s, p + 7) * 100 + twoDigits(s, p + 9);
  const hour = twoDigits(s, p + 12);
  const minute = twoDigits(s, p + 15);
  const second = twoDigits(s, p + 18);
  if (
    s.charCodeAt(p + 2) !== SLASH ||
    s.charCodeAt(p + 6) !== SLASH ||
    s.charCodeAt(p + 11) !== COLON ||
    s.charCodeAt(p + 14) !== COLON ||
    s.charCodeAt(p + 17) !== COLON ||
    month < 0 ||
    month % 3 !== 0 ||
    day < 1 ||
    day > 31 ||
    // Date.UTC reads years below 100 as 19xx.
    year < 1000 ||
    hour < 0 ||
    hour > 23 ||
    minute < 0 ||
    minute > 59 ||
    second < 0 ||
    second > 60
  ) {
    return NaN;
  }
  return Date.UTC(year, month / 3, day, hour, minute, second);
}

/** nginx `$time_local` (`26/Nov/2026:08:45:57 +0000`) at s[p] → epoch ms; NaN if not that. */
export function parseClfTime(s: string, p: number): number {
  const utc = parseDayTime(s, p);
  const sign = s.charCodeAt(p + 21);
  const zh = twoDigits(s, p + 22);
  const zm = twoDigits(s, p + 24);
  if (s.charCodeAt(p + 20) !== SPACE || (sign !== PLUS && sign !== MINUS) || zh < 0 || zm < 0 || zm > 59) return NaN;
  return utc - (sign === MINUS ? -1 : 1) * (zh * 60 + zm) * 60_000;
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const l = c | 0x20;
  return l >= 0x61 && l <= 0x66 ? l - 0x61 + 10 : -1;
}

export function hexByte(s: string, i: number, end: number): number {
  if (i + 2 > end) return -1;
  const hi = hexValue(s.charCodeAt(i));
  const lo = hexValue(s.charCodeAt(i + 1));
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

/**
 * Decoded text being built from an escaped field. Escaped bytes are held until the run
 * ends, then decoded together, since a run of them is one UTF-8 sequence (`é` is two).
 */
export class UnescapedText {
  private out: string;
  private bytes: number[] = [];

  constructor(prefix: string) {
    this.out = prefix;
  }

  byte(b: number): void {
    this.bytes.push(b);
  }

  text(t: string): void {
    if (this.bytes.length > 0) this.flush();
    this.out += t;
  }

  done(): string {
    if (this.bytes.length > 0) this.flush();
    return this.out;
  }

  private flush(): void {
    this.out += Buffer.from(this.bytes).toString('utf8');
    this.bytes = [];
  }
}
