import type { ServiceImpl } from '@connectrpc/connect';
import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { sql } from 'kysely';
import { VariableSchema, VariableService, type Variable } from '@cronium/proto/api/v1/variable';
import type { Selectable } from 'kysely';
import type { VariablesTable } from '../store/schema.ts';
import { keyProblem } from '../variables/keys.ts';
import { sealVariable } from '../variables/sealing.ts';
import { principalOf } from './auth.ts';
import { invalid, notFound } from './errors.ts';
import { mustChange } from './event-service.ts';
import type { ApiDeps } from './deps.ts';
import { audited } from './changes.ts';

const MAX_VALUE_BYTES = 64 * 1024;

/** A secret's value is never returned, only that it is one. */
function variableToProto(row: Selectable<VariablesTable>): Variable {
  return create(VariableSchema, { key: row.key, value: row.secret ? '' : row.value, secret: row.secret, updatedAt: timestampFromDate(new Date(row.updated_at)) });
}

function checkedKey(key: string, field: string): string {
  const problem = keyProblem(key);
  if (problem) throw invalid(field, problem);
  return key;
}

export function variableService(deps: ApiDeps): ServiceImpl<typeof VariableService> {
  const { db, sealer } = deps;
  return {
    async listVariables(_req, ctx) {
      const { ownerId } = principalOf(ctx.values);
      const rows = await db.selectFrom('variables').selectAll().where('owner_id', '=', ownerId).orderBy('key').execute();
      return { variables: rows.map(variableToProto) };
    },
    async getVariable(req, ctx) {
      const { ownerId } = principalOf(ctx.values);
      if (!req.key) throw invalid('key', 'required');
      const row = await db.selectFrom('variables').selectAll().where('owner_id', '=', ownerId).where('key', '=', req.key).executeTakeFirstOrThrow(() => notFound('variable', req.key));
      return { variable: variableToProto(row) };
    },
    async setVariable(req, ctx) {
      const principal = principalOf(ctx.values);
      mustChange(principal);
      const key = checkedKey(req.key, 'variable.key');
      if (Buffer.byteLength(req.value) > MAX_VALUE_BYTES) throw invalid('variable.value', 'at most 64 KiB');
      const value = req.secret ? sealVariable(sealer, principal.ownerId, key, req.value) : req.value;
      return audited(db, ctx, async (tx) => {
        const row = await tx
          .insertInto('variables')
          .values({ owner_id: principal.ownerId, key, value, secret: req.secret })
          .onConflict((oc) => oc.columns(['owner_id', 'key']).doUpdateSet({ value, secret: req.secret, updated_at: sql<Date>`now()` }))
          .returningAll()
          .executeTakeFirstOrThrow();
        return { variable: variableToProto(row) };
      });
    },
    async deleteVariable(req, ctx) {
      const principal = principalOf(ctx.values);
      mustChange(principal);
      if (!req.key) throw invalid('key', 'required');
      return audited(db, ctx, async (tx) => {
        const deleted = await tx.deleteFrom('variables').where('owner_id', '=', principal.ownerId).where('key', '=', req.key).executeTakeFirst();
        if (deleted.numDeletedRows === 0n) throw notFound('variable', req.key);
        return {};
      });
    },
  };
}
