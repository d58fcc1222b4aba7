// The CLI's side of the vault API: where the vault is (--vault, SWITCHBACK_VAULT, default
// http://127.0.0.1:8470) and which token to send (--token, SWITCHBACK_TOKEN; `switchback server`
// prints the export line at its first start). A problem document from the vault becomes a
// SwitchbackError with the vault's code and sentence, so the CLI prints it as its own refusal.
import type { Command } from "commander";
import { SwitchbackError } from "../domain/errors.ts";

export const DEFAULT_VAULT_URL = "http://127.0.0.1:8470";
const TIMEOUT_MS = 60_000;

export interface VaultFlags {
  vault?: string;
  token?: string;
}

/** Adds --vault and --token to a command that talks to the vault. */
export function withVault(cmd: Command): Command {
  return cmd
    .option("--vault <url>", `the vault's URL (env SWITCHBACK_VAULT, default ${DEFAULT_VAULT_URL})`)
    .option("--token <token>", "bearer token (env SWITCHBACK_TOKEN)");
}

export class VaultClient {
  readonly url: string;
  readonly #token: string;

  constructor(url: string, token: string) {
    this.url = url.replace(/\/+$/, "");
    this.#token = token;
  }

  get<T>(path: string, query: Record<string, string | undefined> = {}): Promise<T> {
    const q = Object.entries(query).filter((e): e is [string, string] => e[1] !== undefined);
    return this.#request<T>("GET", q.length === 0 ? path : `${path}?${new URLSearchParams(q)}`);
  }

  post<T>(path: string, body: unknown): Promise<T> {
    return this.#request<T>("POST", path, body);
  }

  patch<T>(path: string, body: unknown): Promise<T> {
    return this.#request<T>("PATCH", path, body);
  }

  delete<T>(path: string): Promise<T> {
    return this.#request<T>("DELETE", path);
  }

  async #request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = {
      authorization: `Bearer ${this.#token}`,
      accept: "application/json",
    };
    if (body !== undefined) headers["content-type"] = "application/json";
    let res: Response;
    try {
      res = await fetch(this.url + path, {
        method,
        headers,
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(TIMEOUT_MS),
      });
    } catch (err) {
      // undici says "fetch failed"; the cause says why (ECONNREFUSED, ENOTFOUND, "bad port")
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      const why =
        (err as Error).name === "TimeoutError"
          ? `no answer within ${TIMEOUT_MS / 1000} s`
          : (cause?.code ?? cause?.message ?? (err as Error).message);
      throw new SwitchbackError(
        "VAULT_UNREACHABLE",
        `the vault at ${this.url} cannot be reached (${why}); start it with 'switchback server' or point --vault / SWITCHBACK_VAULT at it`,
        { cause: err },
      );
    }
    const text = await res.text();
    if (res.ok) return (text === "" ? null : JSON.parse(text)) as T;
    if ((res.headers.get("content-type") ?? "").startsWith("application/problem+json")) {
      const p = JSON.parse(text) as { code?: string; detail?: string };
      throw new SwitchbackError(
        p.code ?? `HTTP_${res.status}`,
        p.detail ?? `the vault answered ${res.status}`,
      );
    }
    throw new SwitchbackError(
      "VAULT_PROTOCOL_ERROR",
      `the vault at ${this.url} answered ${method} ${path} with HTTP ${res.status} and no problem document; is ${this.url} a Switchback vault?`,
    );
  }
}

/** The client for a command's flags and the environment; refuses when there is no token. */
export function vaultClient(o: VaultFlags): VaultClient {
  const url = o.vault ?? process.env["SWITCHBACK_VAULT"] ?? DEFAULT_VAULT_URL;
  try {
    new URL(url);
  } catch {
    throw new SwitchbackError(
      "VAULT_URL_INVALID",
      `vault URL ${JSON.stringify(url)} is not a URL; write it like ${DEFAULT_VAULT_URL}`,
    );
  }
  const token = o.token ?? process.env["SWITCHBACK_TOKEN"];
  if (token === undefined || token === "") {
    throw new SwitchbackError(
      "VAULT_TOKEN_MISSING",
      "no token for the vault; pass --token or set SWITCHBACK_TOKEN (switchback server prints the admin token at its first start)",
    );
  }
  return new VaultClient(url, token);
}

/** A path segment from an id or name the operator typed. */
export function seg(s: string): string {
  return encodeURIComponent(s);
}
