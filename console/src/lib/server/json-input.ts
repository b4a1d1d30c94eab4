// The optional JSON input of "Run now" forms → a protobuf Value.
import { fromJson, type JsonValue } from '@bufbuild/protobuf';
import { ValueSchema, type Value } from '@bufbuild/protobuf/wkt';
import { FormError } from './event-form.ts';

export function jsonInput(form: FormData): Value | undefined {
  const raw = String(form.get('input') ?? '').trim();
  if (!raw) return undefined;
  try {
    return fromJson(ValueSchema, JSON.parse(raw) as JsonValue);
  } catch {
    throw new FormError('Input must be valid JSON, e.g. {"name": "world"}');
  }
}
