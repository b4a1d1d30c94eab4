import type { Sealer } from '../secrets/sealer.ts';

/** The associated data binding a secret variable's ciphertext to its owner and key. */
function boundTo(ownerId: string, key: string): string {
  return `cronium/variables/${ownerId}/${key}`;
}

export function sealVariable(sealer: Sealer, ownerId: string, key: string, value: string): string {
  return sealer.seal(value, boundTo(ownerId, key));
}

export function openVariable(sealer: Sealer, ownerId: string, key: string, sealed: string): string {
  return sealer.open(sealed, boundTo(ownerId, key));
}

// The queue's transitions store what scripts set with setVariable, deep inside
// the transaction that ends an attempt; the sealer reaches them through here
// rather than through every caller of finishLocked.
let processSealer: Sealer | undefined;

/** Set once at start: seals what scripts write to secret variables. */
export function useVariableSealer(sealer: Sealer): void {
  processSealer = sealer;
}

export function variableSealer(): Sealer | undefined {
  return processSealer;
}
