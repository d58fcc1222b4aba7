// One JSON call to the vault's API from an agent or an appliance: bearer token, a time limit, and a
// problem document turned into a SwitchbackError with the vault's code and sentence.
import { SwitchbackError } from "../domain/errors.ts";

export async function callVault<T>(
  vault: string,
  o: { method: string; route: string; token: string; body?: unknown; timeoutMs?: number },
): Promise<T> {
  let res: Response;
  try {
    res = await fetch(new URL(o.route, vault), {
      method: o.method,
      headers: {
        authorization: `Bearer ${o.token}`,
        ...(o.body !== undefined ? { "content-type": "application/json" } : {}),
      },
      body: o.body === undefined ? undefined : JSON.stringify(o.body),
      signal: AbortSignal.timeout(o.timeoutMs ?? 10_000),
    });
  } catch (err) {
    throw new SwitchbackError(
      "VAULT_UNREACHABLE",
      `the vault at ${vault} did not answer (${(err as Error).message})`,
    );
  }
  const text = await res.text();
  if (!res.ok) {
    let code = `HTTP_${res.status}`;
    let detail = text;
    try {
      const p = JSON.parse(text) as { code?: string; detail?: string };
      code = p.code ?? code;
      detail = p.detail ?? detail;
    } catch {
      // not a problem document
    }
    throw Object.assign(new SwitchbackError(code, `the vault refused ${o.method} ${o.route}: ${detail}`), {
      status: res.status,
    });
  }
  return JSON.parse(text) as T;
}
