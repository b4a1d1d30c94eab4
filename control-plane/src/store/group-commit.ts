/**
 * Group commit: items handed in while one group is being written wait, and go
 * together as the next group, with one statement. Under light load a group is
 * a single item (no added wait); under heavy load the groups grow, so the
 * statements per item fall instead of the queue growing.
 */
export class GroupCommit<In, Out> {
  readonly #write: (items: readonly In[]) => Promise<readonly Out[]>;
  #waiting: { item: In; resolve: (out: Out) => void; reject: (error: unknown) => void }[] = [];
  #busy = false;

  /** `write` returns one result per item, in order. */
  constructor(write: (items: readonly In[]) => Promise<readonly Out[]>) {
    this.#write = write;
  }

  add(item: In): Promise<Out> {
    return new Promise<Out>((resolve, reject) => {
      this.#waiting.push({ item, resolve, reject });
      if (!this.#busy) void this.#flush();
    });
  }

  async #flush(): Promise<void> {
    this.#busy = true;
    while (this.#waiting.length > 0) {
      const group = this.#waiting;
      this.#waiting = [];
      try {
        const results = await this.#write(group.map((entry) => entry.item));
        group.forEach((entry, i) => entry.resolve(results[i]!));
      } catch (error) {
        for (const entry of group) entry.reject(error);
      }
    }
    this.#busy = false;
  }
}
