// xterm.js set up the same way for live terminals and replays (browser only).
import type { Terminal } from '@xterm/xterm';
import type { FitAddon } from '@xterm/addon-fit';

export async function openXterm(element: HTMLElement, options: { fit?: boolean } = {}): Promise<{ term: Terminal; fit: FitAddon }> {
  const [{ Terminal }, { FitAddon }, { Unicode11Addon }] = await Promise.all([import('@xterm/xterm'), import('@xterm/addon-fit'), import('@xterm/addon-unicode11')]);
  const term = new Terminal({ allowProposedApi: true, cursorBlink: true, fontFamily: 'ui-monospace, SFMono-Regular, Menlo, monospace', fontSize: 14, lineHeight: 1.15, scrollback: 5000 });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.loadAddon(new Unicode11Addon());
  term.unicode.activeVersion = '11';
  term.open(element);
  if (options.fit !== false) fit.fit();
  return { term, fit };
}

/** One event of an asciicast v2 recording: [seconds, code, data]. */
export type CastEvent = [number, string, string];

export function parseCast(text: string): { width: number; height: number; events: CastEvent[] } {
  const [head = '{}', ...lines] = text.split('\n').filter((line) => line.trim() !== '');
  const header = JSON.parse(head) as { width?: number; height?: number };
  return { width: header.width ?? 80, height: header.height ?? 24, events: lines.map((line) => JSON.parse(line) as CastEvent) };
}
