import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The folder holding the runtime helpers (bash, python, node) that are mounted
 * into job containers: `agent/runtime` when run from source.
 */
export function runtimeDir(_dataDir: string): string {
  return join(dirname(fileURLToPath(import.meta.url)), '..', 'runtime');
}
