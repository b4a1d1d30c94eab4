// Seeded fuzz inputs for the protobuf endpoints: random bytes, mutated valid
// messages and messages declaring lengths far beyond what they carry. The same
// seed gives the same cases, so a failure can be replayed.

/** mulberry32: small, fast, good enough to pick fuzz cases. */
export function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export type FuzzKind = 'random' | 'mutated' | 'huge-length';

export interface FuzzCase {
  readonly kind: FuzzKind;
  readonly bytes: Uint8Array;
}

function varint(value: number): number[] {
  const out: number[] = [];
  let v = value;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return out;
}

/** Flips, inserts, deletes or overwrites a few bytes, or truncates. */
function mutate(random: () => number, valid: Uint8Array): Uint8Array {
  const bytes = [...valid];
  const edits = 1 + Math.floor(random() * 4);
  for (let i = 0; i < edits; i++) {
    const at = Math.floor(random() * (bytes.length + 1));
    const choice = random();
    if (choice < 0.3 && bytes.length > 0) bytes[Math.min(at, bytes.length - 1)]! ^= 1 << Math.floor(random() * 8);
    else if (choice < 0.5) bytes.splice(at, 0, Math.floor(random() * 256));
    else if (choice < 0.7) bytes.splice(at, 1);
    else if (choice < 0.85) bytes[Math.min(at, Math.max(0, bytes.length - 1))] = [0x00, 0xff, 0x80, 0x7f][Math.floor(random() * 4)]!;
    else bytes.length = Math.floor(random() * bytes.length);
  }
  return Uint8Array.from(bytes);
}

/** A length-delimited field declaring far more bytes than follow (up to 2^35). */
function hugeLength(random: () => number, fieldNumbers: readonly number[]): Uint8Array {
  const field = fieldNumbers[Math.floor(random() * fieldNumbers.length)]!;
  const declared = [0x7fffffff, 0xffffffff, 2 ** 35, 64 * 1024 * 1024][Math.floor(random() * 4)]!;
  const tail = Array.from({ length: Math.floor(random() * 16) }, () => Math.floor(random() * 256));
  return Uint8Array.from([(field << 3) | 2, ...varint(declared), ...tail]);
}

/**
 * `count` cases from `seed`: a third random bytes (0–256 long), half mutated
 * copies of `valid` messages, the rest huge declared lengths on the given
 * length-delimited field numbers.
 */
export function* fuzzCases(seed: number, count: number, valid: readonly Uint8Array[], fieldNumbers: readonly number[]): Generator<FuzzCase> {
  const random = prng(seed);
  for (let i = 0; i < count; i++) {
    const pick = random();
    if (pick < 0.33) {
      yield { kind: 'random', bytes: Uint8Array.from({ length: Math.floor(random() * 257) }, () => Math.floor(random() * 256)) };
    } else if (pick < 0.85) {
      yield { kind: 'mutated', bytes: mutate(random, valid[Math.floor(random() * valid.length)]!) };
    } else {
      yield { kind: 'huge-length', bytes: hugeLength(random, fieldNumbers) };
    }
  }
}

/** How many fuzz cases each fuzz test runs (CRONIUM_FUZZ_CASES, default 10,000). */
export const FUZZ_CASES = Number(process.env.CRONIUM_FUZZ_CASES ?? 10_000);
export const FUZZ_SEED = Number(process.env.CRONIUM_FUZZ_SEED ?? 20261201);
