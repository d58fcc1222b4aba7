// Errors as RFC 9457 problem documents (application/problem+json: type, title, status, detail, code,
// instance). A SwitchbackError's code decides the HTTP status through one table (PROBLEM_STATUS) and
// a few suffix rules, so a new refusal needs one line here, never a status chosen in a handler.
// Invariant: a response never carries a stack or an internal message of an unexpected error.
import type { FastifyError, FastifyReply } from "fastify";
import { SwitchbackError } from "../../domain/errors.ts";
import { PROBLEM_TYPE_PREFIX } from "../../replication/wire.ts";

/** Status of each code that the rules below do not decide (or decide otherwise). */
export const PROBLEM_STATUS: Record<string, number> = {
  INVALID_REQUEST: 400,
  INVALID_DURATION: 400,
  NOTES_TOO_LONG: 400,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  ROUTE_NOT_FOUND: 404,
  ITEM_BUSY: 409,
  ITEM_DISABLED: 409,
  GENERATION_FENCED: 409,
  DATASTORE_PATH_NOT_EMPTY: 409,
  DATASTORE_UNREACHABLE: 422,
  APPLIANCE_SITE_IN_PROCESS: 409,
  APPLIANCE_SITE_SERVED: 409,
  TOKEN_NAME_TAKEN: 409,
  TOKEN_LAST_ADMIN: 409,
  BODY_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  SHUTTING_DOWN: 503,
  VAULT_STARTING: 503,
  INTERNAL: 500,
};

/**
 * Families of the lifecycle core's refusals (src/domain/lifecycle.ts, reprotect.ts,
 * point-selection.ts): the operation is not possible in the item's current state or setting, 409.
 * A precondition such as REPROTECT_APPLIANCE_UNREACHABLE is a refusal too, not the vault's failure.
 */
const REFUSAL_PREFIXES = [
  "REPROTECT_",
  "FAILOVER_",
  "FAILBACK_",
  "DRILL_",
  "DISABLE_",
  "COMMIT_",
  "LIFECYCLE_",
  "POINT_",
  "PROTECT_",
  "OPERATION_",
  "ITEM_",
  "JOB_",
  "PLAN_",
  "NOTES_",
  "SEED_",
];

/** The rules, in order, for a code that is not in the table. */
const RULES: [test: (code: string) => boolean, status: number][] = [
  [(c) => c.endsWith("_NOT_FOUND"), 404],
  [(c) => c.startsWith("INVALID_") || c.endsWith("_INVALID"), 400],
  [(c) => REFUSAL_PREFIXES.some((p) => c.startsWith(p)), 409],
  [
    (c) => ["_EXISTS", "_IN_USE", "_BUSY", "_NOT_ALLOWED", "_REFUSED", "_FENCED"].some((s) => c.endsWith(s)),
    409,
  ],
  [(c) => c.endsWith("_UNREACHABLE"), 503],
  // MACHINE_NOT_STARTABLE, DRILL_NOT_ACTIVE, AGENT_NOT_REPLICATING: not possible in this state
  [(c) => c.includes("_NOT_"), 409],
];

export function problemStatus(code: string): number {
  const s = PROBLEM_STATUS[code];
  if (s !== undefined) return s;
  for (const [test, status] of RULES) if (test(code)) return status;
  // a SwitchbackError nobody mapped (DB_CORRUPT_ROW, …): a deliberate sentence, shown, but a failure
  return 500;
}

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  instance?: string;
}

export function problem(code: string, detail: string, instance?: string): Problem {
  const status = problemStatus(code);
  return {
    type: `${PROBLEM_TYPE_PREFIX}${code}`,
    title: code,
    status,
    detail,
    code,
    ...(instance !== undefined ? { instance } : {}),
  };
}

export function sendProblem(
  reply: FastifyReply,
  code: string,
  detail: string,
  instance?: string,
): FastifyReply {
  const body = problem(code, detail, instance);
  if (body.status === 401) reply.header("www-authenticate", 'Bearer realm="switchback-vault"');
  // a string payload skips the route's response serializer: the problem goes out as it is
  return reply.code(body.status).type("application/problem+json").send(JSON.stringify(body));
}

/** Shorthand for handlers: `throw invalid("subnet", "…")`. */
export function invalid(field: string, what: string): SwitchbackError {
  return new SwitchbackError("INVALID_REQUEST", `field "${field}" ${what}`);
}

// ---- schema validation failures → one sentence naming the field ----

interface AjvError {
  instancePath: string;
  keyword: string;
  message?: string;
  params: Record<string, unknown>;
  data?: unknown;
  parentSchema?: { description?: string };
}

function fieldName(instancePath: string, extra?: unknown): string {
  const parts = instancePath.split("/").filter((p) => p !== "");
  if (typeof extra === "string") parts.push(extra);
  return parts
    .map((p, i) => (/^\d+$/.test(p) ? `[${p}]` : i === 0 ? p.replaceAll("~1", "/") : `.${p}`))
    .join("");
}

function shown(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/** The detail of a 400 for a request that failed its route's schema. */
export function validationDetail(context: string | undefined, errors: readonly AjvError[]): string {
  const where =
    context === "querystring" ? "query parameter" : context === "params" ? "path parameter" : "field";
  const e = errors[0];
  if (e === undefined) return `the request does not match its schema`;
  if (e.keyword === "required") {
    return `${where} "${fieldName(e.instancePath, e.params.missingProperty)}" is required`;
  }
  if (e.keyword === "additionalProperties") {
    return `${where} "${fieldName(e.instancePath, e.params.additionalProperty)}" is not allowed here; check its spelling against GET /openapi.json`;
  }
  if (e.keyword === "minProperties" && e.instancePath === "") {
    return `the request body names no field to change; give at least one`;
  }
  if (e.instancePath === "" && e.keyword === "type") {
    return context === "body"
      ? `the request body must be a JSON object (Content-Type: application/json)`
      : `the ${context ?? "request"} ${e.message ?? "is not valid"}`;
  }
  const name = fieldName(e.instancePath);
  const hint = e.parentSchema?.description !== undefined ? `: ${e.parentSchema.description}` : "";
  const value = "data" in e ? ` (got ${shown(e.data)})` : "";
  return `${where} "${name}"${value} ${e.message ?? "is not valid"}${hint}`;
}

/** Maps what Fastify throws before a handler runs (bad JSON, wrong content type, too large). */
export function frameworkProblem(err: FastifyError): { code: string; detail: string } | null {
  switch (err.code) {
    case "FST_ERR_CTP_INVALID_JSON_BODY":
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return { code: "INVALID_REQUEST", detail: `the request body is not valid JSON (${err.message})` };
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return { code: "BODY_TOO_LARGE", detail: "the request body is larger than the vault accepts (1 MiB)" };
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
    case "FST_ERR_CTP_INVALID_CONTENT_LENGTH":
      return {
        code: "UNSUPPORTED_MEDIA_TYPE",
        detail: `${err.message}; the vault API takes application/json`,
      };
  }
  if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) {
    return { code: "INVALID_REQUEST", detail: err.message };
  }
  return null;
}
