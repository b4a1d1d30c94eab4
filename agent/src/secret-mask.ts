const MASK = Buffer.from('***');

/** The forms a secret is masked in: as is, base64 (with and without padding, and URL-safe) and URL-encoded. */
export function secretForms(values: Iterable<string>): string[] {
  const forms = new Set<string>();
  for (const value of values) {
    if (!value) continue;
    const base64 = Buffer.from(value).toString('base64');
    for (const form of [value, base64, base64.replace(/=+$/, ''), Buffer.from(value).toString('base64url'), encodeURIComponent(value), new URLSearchParams({ v: value }).toString().slice(2)]) {
      if (form) forms.add(form);
    }
  }
  // Longest first, so a value that contains another is masked whole.
  return [...forms].sort((a, b) => b.length - a.length);
}

/** Replaces every form of the secrets in a string (for error messages). */
export function maskText(text: string, forms: readonly string[]): string {
  let masked = text;
  for (const form of forms) masked = masked.split(form).join('***');
  return masked;
}

/** Masks secrets in every string of a JSON value (a job's output), keys included. */
export function maskJson<T>(value: T, forms: readonly string[]): T {
  if (forms.length === 0) return value;
  if (typeof value === 'string') return maskText(value, forms) as T;
  if (Array.isArray(value)) return value.map((item) => maskJson(item, forms)) as T;
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [maskText(key, forms), maskJson(item, forms)])) as T;
  }
  return value;
}

/**
 * Masks secrets in a byte stream that arrives in pieces. The end of each piece
 * that could be the start of a secret is held back until the next piece shows
 * whether it is one, so a secret split across two writes is masked too.
 */
export class StreamMasker {
  readonly #patterns: readonly Buffer[];
  #pending: Buffer = Buffer.alloc(0);

  constructor(forms: readonly string[]) {
    this.#patterns = forms.map((form) => Buffer.from(form));
  }

  /** The bytes that are safe to send now, masked. */
  push(data: Buffer): Buffer {
    if (this.#patterns.length === 0) return data;
    const buffer = this.#pending.length > 0 ? Buffer.concat([this.#pending, data]) : data;
    const out: Buffer[] = [];
    let from = 0;
    for (;;) {
      const match = this.#earliest(buffer, from);
      if (!match) break;
      out.push(buffer.subarray(from, match.at), MASK);
      from = match.at + match.length;
    }
    const hold = this.#heldBack(buffer, from);
    out.push(buffer.subarray(from, buffer.length - hold));
    this.#pending = Buffer.from(buffer.subarray(buffer.length - hold));
    return Buffer.concat(out);
  }

  /** What was held back, at the end of the stream (it was not a secret). */
  flush(): Buffer {
    const rest = this.#pending;
    this.#pending = Buffer.alloc(0);
    return rest;
  }

  #earliest(buffer: Buffer, from: number): { at: number; length: number } | undefined {
    let best: { at: number; length: number } | undefined;
    for (const pattern of this.#patterns) {
      const at = buffer.indexOf(pattern, from);
      if (at >= 0 && (!best || at < best.at)) best = { at, length: pattern.length };
    }
    return best;
  }

  /** Length of the longest end of buffer[from..] that some secret starts with. */
  #heldBack(buffer: Buffer, from: number): number {
    const longest = Math.min(this.#patterns[0]!.length - 1, buffer.length - from);
    for (let length = longest; length > 0; length--) {
      const tail = buffer.subarray(buffer.length - length);
      if (this.#patterns.some((pattern) => pattern.length > length && pattern.subarray(0, length).equals(tail))) return length;
    }
    return 0;
  }
}
