/**
 * Application-level group commit. Requests are sent at once while a slot is free; while `maxInFlight`
 * statements are running, new requests queue and leave together in the next one. So one request at a
 * time has the latency of a direct write, and many share one round trip and one WAL flush.
 * A failed statement fails every request in it.
 */
export class Batcher<Request, Result> {
  readonly #send: (requests: Request[]) => Promise<Result[]>;
  readonly #maxBatch: number;
  readonly #maxInFlight: number;
  #queue: { request: Request; resolve(result: Result): void; reject(error: unknown): void }[] = [];
  #inFlight = 0;

  constructor(send: (requests: Request[]) => Promise<Result[]>, options: { maxBatch: number; maxInFlight: number }) {
    this.#send = send;
    this.#maxBatch = options.maxBatch;
    this.#maxInFlight = options.maxInFlight;
  }

  submit(request: Request): Promise<Result> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ request, resolve, reject });
      this.#pump();
    });
  }

  #pump(): void {
    while (this.#inFlight < this.#maxInFlight && this.#queue.length > 0) {
      const batch = this.#queue.splice(0, this.#maxBatch);
      this.#inFlight++;
      this.#send(batch.map((item) => item.request))
        .then(
          (results) => batch.forEach((item, i) => item.resolve(results[i]!)),
          (error: unknown) => batch.forEach((item) => item.reject(error)),
        )
        .finally(() => {
          this.#inFlight--;
          this.#pump();
        });
    }
  }
}
