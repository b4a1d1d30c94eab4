import { sql, type RawBuilder } from 'kysely';

/** A column of an inline table: its name and the Postgres type its values are cast to. */
export type ValuesColumn = readonly [name: string, type: 'text' | 'int' | 'bool' | 'timestamptz' | 'jsonb'];

/**
 * `(values ($1::text, $2::int), ($3::text, $4::int)) as alias(a, b)`: many rows
 * as one table, for one set-based statement (`update … from`) instead of one
 * statement per row. Every value is a bound parameter, cast to its column's type.
 */
export function valuesTable(alias: string, columns: readonly ValuesColumn[], rows: readonly (readonly unknown[])[]): RawBuilder<unknown> {
  if (rows.length === 0) throw new Error('valuesTable needs at least one row');
  const tuples = rows.map((row) => sql`(${sql.join(columns.map(([, type], i) => sql`${row[i] ?? null}::${sql.raw(type)}`))})`);
  const names = sql.join(columns.map(([name]) => sql.id(name)));
  return sql`(values ${sql.join(tuples)}) as ${sql.id(alias)}(${names})`;
}
