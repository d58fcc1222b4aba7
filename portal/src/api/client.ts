// The portal's only way to the vault: the public API through openapi-fetch, typed by schema.d.ts
// (generated from /openapi.json by `npm run gen:api`). Every call sends the signed-in token; a
// problem document becomes an ApiError carrying its stable code and sentence; a 401 signs out.
import createClient, { type Middleware } from "openapi-fetch";
import type { paths } from "./schema.d.ts";

type Json<R> = R extends { content: { "application/json": infer J } } ? J : never;
type Success<R> = R extends { 200: infer X }
  ? Json<X>
  : R extends { 201: infer X }
    ? Json<X>
    : R extends { 202: infer X }
      ? Json<X>
      : never;
/** The success body of an operation, e.g. Answer<"/v1/items/{item}", "get">. */
export type Answer<P extends keyof paths, M extends keyof paths[P]> = paths[P][M] extends {
  responses: infer R;
}
  ? Success<R>
  : never;

export type ItemView = Answer<"/v1/items/{item}", "get">;
export type PointView = Answer<"/v1/items/{item}/points", "get">[number];
export type Job = Answer<"/v1/jobs/{job}", "get">;
export type JobLog = Answer<"/v1/jobs/{job}/logs", "get">[number];
export type Site = Answer<"/v1/sites", "get">[number];
export type Appliance = Answer<"/v1/appliances", "get">[number];
export type Datastore = Answer<"/v1/datastores", "get">[number];
export type Policy = Answer<"/v1/policies", "get">[number];
export type Machine = Answer<"/v1/machines/{machine}", "get">;
export type Plan = Answer<"/v1/plans/{plan}", "get">;
export type Decision = Answer<"/v1/items/{item}/failover", "post">["decision"];
export type Operation = ItemView["allowedOperations"][number];

/** A refusal or failure the vault explained: `code` is stable (e.g. REPROTECT_OLD_MACHINE_RUNNING). */
export class ApiError extends Error {
  readonly code: string;
  readonly status: number;
  constructor(status: number, code: string, detail: string) {
    super(detail);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

const TOKEN_KEY = "switchback.token";
let token: string | null = sessionStorage.getItem(TOKEN_KEY) ?? localStorage.getItem(TOKEN_KEY);
const signedOutListeners = new Set<(why: string) => void>();

export function currentToken(): string | null {
  return token;
}

/** Uses a token for the calls that follow, without keeping it (sign-in checks it first). */
export function tryToken(t: string): void {
  token = t;
}

/** Keeps the token in use: for this tab, and with `remember` on this device too. */
export function keepToken(remember: boolean): void {
  if (token === null) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  if (remember) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
}

// signing out in one tab signs out the others that share the device's token
addEventListener("storage", (e) => {
  if (e.key === TOKEN_KEY && e.newValue === null && token !== null && e.oldValue === token) {
    signOut("you signed out in another tab");
  }
});

export function signOut(why = ""): void {
  token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  localStorage.removeItem(TOKEN_KEY);
  for (const l of signedOutListeners) l(why);
}

export function onSignedOut(l: (why: string) => void): () => void {
  signedOutListeners.add(l);
  return () => signedOutListeners.delete(l);
}

const auth: Middleware = {
  onRequest({ request }) {
    if (token !== null) request.headers.set("authorization", `Bearer ${token}`);
    return request;
  },
};

export const client = createClient<paths>({ baseUrl: location.origin });
client.use(auth);

/** Turns a failed answer into an ApiError (and signs out on 401). */
export function problemOf(status: number, body: unknown): ApiError {
  const p = (body ?? {}) as { code?: string; detail?: string; title?: string };
  const err = new ApiError(
    status,
    p.code ?? `HTTP_${status}`,
    p.detail ?? p.title ?? `the vault answered ${status}`,
  );
  if (status === 401) signOut(err.message);
  return err;
}

/** Awaits an openapi-fetch call: its data, or an ApiError. */
export async function ok<T>(
  call: Promise<{ data?: T; error?: unknown; response: Response }>,
): Promise<NonNullable<T>> {
  let r: Awaited<typeof call>;
  try {
    r = await call;
  } catch (err) {
    throw new ApiError(0, "VAULT_UNREACHABLE", `the vault did not answer (${(err as Error).message})`);
  }
  if (!r.response.ok || r.data === undefined) throw problemOf(r.response.status, r.error);
  return r.data as NonNullable<T>;
}
