// HTTP requests of the replication stream (agent → process server): node:http with connections kept
// alive, a body given in pieces and written as it is (never copied into one buffer), and a time
// limit per attempt. fetch (undici) copied every body twice more and cost the agent ~0.3 ms of CPU a
// request, about as much again as the rest of a full copy's work on its JavaScript thread.
import http from "node:http";
import type https from "node:https";

export interface HttpAnswer {
  status: number;
  body: Buffer;
}

export interface HttpRequest {
  method: "GET" | "POST" | "PUT";
  /** the path and query, e.g. /v1/status */
  path: string;
  headers?: Record<string, string>;
  /** the body, in pieces sent one after another */
  body?: Buffer | readonly Buffer[];
  /** the whole attempt, the answer's body included */
  timeoutMs: number;
}

/** An error of a request that got no answer: `code` is the system's (ECONNREFUSED …) or TIMEOUT. */
export class HttpFailure extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

export class HttpClient {
  readonly #base: URL;
  readonly #module: typeof http | typeof https;
  readonly #agent: http.Agent;

  constructor(base: string) {
    this.#base = new URL(base);
    if (this.#base.protocol !== "http:" && this.#base.protocol !== "https:")
      throw new TypeError(`${base}: not an http:// or https:// URL`);
    // node:https (and TLS with it) is loaded only for an https:// server: ~6 ms of every agent's start
    this.#module = this.#base.protocol === "https:" ? process.getBuiltinModule("node:https") : http;
    this.#agent = new this.#module.Agent({ keepAlive: true });
  }

  /**
   * One attempt. Rejects with an HttpFailure when no answer came (worth another attempt), and with
   * what node:http threw when the request could not be made at all (not worth one).
   */
  request(r: HttpRequest): Promise<HttpAnswer> {
    if (r.method === "GET" && r.body !== undefined) throw new TypeError("HttpClient: a GET has no body");
    const parts = r.body === undefined ? [] : Buffer.isBuffer(r.body) ? [r.body] : r.body;
    let length = 0;
    for (const p of parts) length += p.length;
    return new Promise<HttpAnswer>((resolve, reject) => {
      let settled = false;
      const fail = (err: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        const code = (err as Error & { code?: unknown }).code;
        reject(
          err instanceof HttpFailure
            ? err
            : new HttpFailure(typeof code === "string" ? code : "EIO", err.message),
        );
      };
      const req = this.#module.request(
        {
          agent: this.#agent,
          protocol: this.#base.protocol,
          hostname: this.#base.hostname.replace(/^\[|\]$/g, ""),
          port: this.#base.port,
          path: this.#base.pathname.replace(/\/+$/, "") + r.path,
          method: r.method,
          headers: { ...r.headers, ...(r.method === "GET" ? {} : { "content-length": String(length) }) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("error", fail);
          res.on("end", () => {
            if (settled) return;
            settled = true;
            clearTimeout(timer);
            resolve({
              status: res.statusCode ?? 0,
              body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks),
            });
          });
        },
      );
      const timer = setTimeout(() => {
        const e = new HttpFailure("TIMEOUT", `no answer within ${r.timeoutMs} ms`);
        fail(e);
        req.destroy(e);
      }, r.timeoutMs);
      req.on("error", fail);
      for (const p of parts) req.write(p);
      req.end();
    });
  }

  /** Closes the connections kept alive. */
  close(): void {
    this.#agent.destroy();
  }
}
