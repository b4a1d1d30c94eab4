import type { Db } from '../store/database.ts';

/** Output kept per recording; past it the recording notes the cut and the terminal goes on unrecorded. */
const MAX_RECORDED_BYTES = 16 * 1024 * 1024;
const FLUSH_MS = 1_000;

export interface RecordingHeader {
  readonly cols: number;
  readonly rows: number;
  readonly title: string;
}

/**
 * An asciicast v2 recording (https://docs.asciinema.org/manual/asciicast/v2/)
 * of one terminal's output and resizes, written to the database in batches of
 * event lines as the session goes, so a crash loses at most the last second.
 * Keystrokes are not recorded: what the shell echoes is, and a typed password is not.
 */
export class Recording {
  readonly #db: Db;
  readonly #id: string;
  readonly #startedAt = performance.now();
  readonly #decoder = new TextDecoder('utf-8');
  #lines: string[] = [];
  #seq = 0;
  #bytes = 0;
  #recordedBytes = 0;
  #cut = false;
  #timer: NodeJS.Timeout;
  #writing: Promise<void> = Promise.resolve();

  constructor(db: Db, id: string, header: RecordingHeader) {
    this.#db = db;
    this.#id = id;
    this.#lines.push(
      JSON.stringify({ version: 2, width: header.cols, height: header.rows, timestamp: Math.floor(Date.now() / 1000), title: header.title, env: { TERM: 'xterm-256color' } }),
    );
    this.#timer = setInterval(() => this.#flush(), FLUSH_MS);
    this.#timer.unref();
  }

  get outputBytes(): number {
    return this.#bytes;
  }

  output(data: Uint8Array): void {
    this.#bytes += data.length;
    if (this.#cut) return;
    if (this.#recordedBytes + data.length > MAX_RECORDED_BYTES) {
      this.#cut = true;
      this.#event('o', '\r\n[cronium: recording limit reached; the rest of this session is not recorded]\r\n');
      return;
    }
    this.#recordedBytes += data.length;
    // stream: a character split across two chunks is decoded whole with the second.
    const text = this.#decoder.decode(data, { stream: true });
    if (text) this.#event('o', text);
  }

  resize(cols: number, rows: number): void {
    this.#event('r', `${cols}x${rows}`);
  }

  #event(code: 'o' | 'r', data: string): void {
    const seconds = Math.round(performance.now() - this.#startedAt) / 1000;
    this.#lines.push(JSON.stringify([seconds, code, data]));
  }

  #flush(): Promise<void> {
    if (this.#lines.length === 0) return this.#writing;
    const events = this.#lines.join('\n') + '\n';
    const seq = this.#seq++;
    this.#lines = [];
    this.#writing = this.#writing.then(() =>
      this.#db.insertInto('terminal_recording_chunks').values({ session_id: this.#id, seq, events }).execute().then(() => undefined),
    );
    return this.#writing;
  }

  /** Writes what is left and ends the audit row with the reason. */
  async finish(reason: string): Promise<void> {
    clearInterval(this.#timer);
    await this.#flush();
    await this.#db
      .updateTable('terminal_sessions')
      .set({ ended_at: new Date(), end_reason: reason, output_bytes: this.#bytes })
      .where('id', '=', this.#id)
      .execute();
  }
}

/** The whole asciicast of a session, in order. */
export async function readRecording(db: Db, id: string): Promise<string> {
  const chunks = await db.selectFrom('terminal_recording_chunks').select('events').where('session_id', '=', id).orderBy('seq').execute();
  return chunks.map((chunk) => chunk.events).join('');
}
