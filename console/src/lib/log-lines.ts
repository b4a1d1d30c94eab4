// A job's log as lines for a virtual list: chunks from WatchJob are split at
// newlines (a chunk may end mid-line; the next one continues it), each piece
// turned into HTML by its stream's ANSI converter, which keeps colours across
// pieces. A marker line starts each new attempt.
import { AnsiUp } from 'ansi_up';
import type { LogView } from './views.ts';

export interface Segment { stream: LogView['stream']; html: string }
export interface LogLine { key: number; attempt: number; marker: boolean; segments: Segment[] }

export class LogLines {
  readonly lines: LogLine[] = [];
  #ansi = { stdout: new AnsiUp(), stderr: new AnsiUp(), system: new AnsiUp() };
  /** Whether the last line still waits for its newline. */
  #open = false;
  #attempt = 0;

  add(entry: LogView): void {
    if (entry.attempt !== this.#attempt) {
      this.#attempt = entry.attempt;
      this.lines.push({ key: this.lines.length, attempt: entry.attempt, marker: true, segments: [] });
      this.#open = false;
    }
    const pieces = entry.data.split('\n');
    pieces.forEach((piece, i) => {
      if (i > 0) this.#open = false;
      const last = pieces.length - 1;
      if (piece === '' && i === last) return;
      const segment = { stream: entry.stream, html: this.#ansi[entry.stream].ansi_to_html(piece) };
      const previous = this.lines.at(-1);
      if (this.#open && previous) {
        // A new object, so the list renders the grown line again.
        this.lines[this.lines.length - 1] = { ...previous, segments: [...previous.segments, segment] };
      } else {
        this.lines.push({ key: this.lines.length, attempt: entry.attempt, marker: false, segments: [segment] });
      }
      this.#open = i === last;
    });
  }
}
