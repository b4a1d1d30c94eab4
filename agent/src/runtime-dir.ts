import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as sea from 'node:sea';

/**
 * The folder holding the runtime helpers (bash, python, node) that are mounted
 * read-only into job containers (which run as uid 65534, hence 0755/0644).
 * From source: `agent/runtime`. As the single executable: the embedded
 * `runtime/…` assets, extracted to `DATA_DIR/runtime` (files rewritten only when
 * their content changed, each through a rename so a running job never reads a
 * half-written helper).
 */
export function runtimeDir(dataDir: string): string {
  if (sea.isSea()) {
    const root = join(dataDir, 'runtime');
    for (const key of sea.getAssetKeys()) {
      if (!key.startsWith('runtime/') || key.split('/').includes('..')) continue;
      const target = join(dataDir, key);
      const content = Buffer.from(sea.getAsset(key));
      for (let dir = dirname(target); ; dir = dirname(dir)) {
        mkdirSync(dir, { recursive: true });
        chmodSync(dir, 0o755);
        if (dir === root) break;
      }
      let current: Buffer | undefined;
      try {
        current = readFileSync(target);
      } catch {}
      if (!current?.equals(content)) {
        writeFileSync(`${target}.tmp`, content, { mode: 0o644 });
        renameSync(`${target}.tmp`, target);
      }
      chmodSync(target, 0o644);
    }
    return root;
  }
  // esbuild's cjs output turns import.meta into {}: a bundle run by plain node has no source folder.
  const url = import.meta.url as string | undefined;
  if (!url) throw new Error('runtime helpers not found: run agent/src/main.ts from source, or the cronium-agent single executable');
  return join(dirname(fileURLToPath(url)), '..', 'runtime');
}
