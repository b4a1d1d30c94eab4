import { sql } from 'kysely';
import type { Db } from '../store/database.ts';
import type { Sealer } from '../secrets/sealer.ts';
import { openVariable, sealVariable, variableSealer } from './sealing.ts';

/**
 * Stores what a script set with setVariable. A key that is secret stays
 * secret: its new value is sealed. Without a sealer (a queue used on its own,
 * in tests) a secret is left unchanged rather than stored in the clear.
 */
export async function saveVariablesSet(tx: Db, ownerId: string, values: Readonly<Record<string, string>>): Promise<void> {
  const keys = Object.keys(values);
  if (keys.length === 0) return;
  const secretRows = await tx.selectFrom('variables').select('key').where('owner_id', '=', ownerId).where('key', 'in', keys).where('secret', '=', true).forUpdate().execute();
  const secret = new Set(secretRows.map((row) => row.key));
  const sealer = variableSealer();
  for (const [key, plain] of Object.entries(values)) {
    if (secret.has(key) && !sealer) continue;
    const value = secret.has(key) ? sealVariable(sealer!, ownerId, key, plain) : plain;
    await tx
      .insertInto('variables')
      .values({ owner_id: ownerId, key, value })
      .onConflict((oc) => oc.columns(['owner_id', 'key']).doUpdateSet({ value, updated_at: sql<Date>`now()` }))
      .execute();
  }
}

export interface OwnerVariables {
  /** What getVariable reads: every variable, secrets opened. */
  readonly variables: Record<string, string>;
  /** The secret ones, opened: they also go into the job's environment and are masked in its log. */
  readonly secrets: Record<string, string>;
}

/** The variables of each owner, for the jobs being offered. */
export async function variablesOfOwners(db: Db, sealer: Sealer, owners: readonly string[]): Promise<Map<string, OwnerVariables>> {
  const byOwner = new Map<string, OwnerVariables>();
  if (owners.length === 0) return byOwner;
  const rows = await db.selectFrom('variables').select(['owner_id', 'key', 'value', 'secret']).where('owner_id', 'in', owners).execute();
  for (const row of rows) {
    let entry = byOwner.get(row.owner_id);
    if (!entry) byOwner.set(row.owner_id, (entry = { variables: {}, secrets: {} }));
    const value = row.secret ? openOrSkip(sealer, row) : row.value;
    // A secret no key opens (its key was dropped) is left out, rather than stop every offer.
    if (value === undefined) continue;
    entry.variables[row.key] = value;
    if (row.secret) entry.secrets[row.key] = value;
  }
  return byOwner;
}

function openOrSkip(sealer: Sealer, row: { owner_id: string; key: string; value: string }): string | undefined {
  try {
    return openVariable(sealer, row.owner_id, row.key, row.value);
  } catch {
    return undefined;
  }
}

/** The plain (non-secret) variables of one owner, e.g. for notification templates. */
export async function plainVariables(db: Db, ownerId: string): Promise<Record<string, string>> {
  const rows = await db.selectFrom('variables').select(['key', 'value']).where('owner_id', '=', ownerId).where('secret', '=', false).execute();
  return Object.fromEntries(rows.map((row) => [row.key, row.value]));
}

/** Key rotation: secret variables sealed with an old key are sealed again with the current one. */
export async function resealVariables(db: Db, sealer: Sealer): Promise<number> {
  const rows = await db.selectFrom('variables').select(['owner_id', 'key', 'value']).where('secret', '=', true).execute();
  let changed = 0;
  for (const row of rows) {
    if (!sealer.stale(row.value)) continue;
    const value = sealVariable(sealer, row.owner_id, row.key, openVariable(sealer, row.owner_id, row.key, row.value));
    await db.updateTable('variables').set({ value }).where('owner_id', '=', row.owner_id).where('key', '=', row.key).execute();
    changed++;
  }
  return changed;
}
