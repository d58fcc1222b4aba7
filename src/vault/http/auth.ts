// Bearer-token authentication and role checks for every vault route (including /openapi.json and
// unknown paths). One hook authenticates (401 UNAUTHENTICATED) and authorises by the route's declared
// roles (403 FORBIDDEN); admin may call everything, other roles only the routes that name them, and
// viewer every read an operator makes (viewerMayCall, the one place that decides it).
// Handlers of agent routes additionally call requireOwnMachine: an agent acts only for its machine.
import type { FastifyInstance, FastifyRequest } from "fastify";
import { SwitchbackError } from "../../domain/errors.ts";
import { findTokenHolder, type TokenHolder, type TokenRole } from "../inventory/tokens.ts";
import type { VaultDeps } from "./deps.ts";

export type Principal = TokenHolder;

declare module "fastify" {
  interface FastifyRequest {
    /** who sent the request; set by the authentication hook before any handler runs */
    principal: Principal | null;
  }
  interface FastifyContextConfig {
    /** roles that may call the route besides admin */
    allow?: readonly TokenRole[];
    /** served without a token: only the portal's page and assets (portal.ts), never API data */
    public?: boolean;
    /** a read that viewer tokens may not make (what it answers is for admins only) */
    noViewer?: boolean;
  }
}

/** Where settings are read and written: what they hold can be a secret (the alert webhook's URL). */
const SETTINGS_PREFIX = "/v1/settings/";

/**
 * Whether a viewer token may call the route: when the route names viewer in its `allow`, or it is a
 * read (GET, HEAD) that is otherwise for admins only — not a route for machines (one that allows
 * agent, enrol or appliance tokens: the appliance's directory), not a settings read
 * (/v1/settings/*), not a route marked `noViewer`. Every other call (every POST, PUT, PATCH and
 * DELETE) is refused: viewers may only read.
 */
export function viewerMayCall(req: FastifyRequest): boolean {
  const config = req.routeOptions.config;
  const allow = config?.allow ?? [];
  if (allow.includes("viewer")) return true;
  if (req.method !== "GET" && req.method !== "HEAD") return false;
  if (config?.noViewer === true || allow.length > 0) return false;
  return !(req.routeOptions.url ?? req.url).startsWith(SETTINGS_PREFIX);
}

function refusal(holder: TokenHolder, req: FastifyRequest): string {
  const what = `${req.method} ${req.routeOptions.url ?? req.url.split("?")[0]}`;
  const head = `token "${holder.name}" has role ${holder.role}, which may not call ${what}`;
  if (holder.role === "viewer") {
    if (req.method !== "GET" && req.method !== "HEAD") {
      return `${head}; a viewer token may only read (GET); changes need an admin token`;
    }
    const why =
      (req.routeOptions.config?.allow ?? []).length > 0
        ? "it is for machines"
        : (req.routeOptions.url ?? req.url).startsWith(SETTINGS_PREFIX)
          ? "settings can hold secrets"
          : "it is for admins only";
    return `${head}; a viewer token may only read, and not this (${why}); use an admin token`;
  }
  if (holder.role === "agent") return `${head}; an agent token may call only /v1/agent/* for its own machine`;
  return `${head}; use an admin token`;
}

const BEARER = /^Bearer\s+(\S+)\s*$/i;

export function installAuth(app: FastifyInstance, deps: VaultDeps): void {
  app.decorateRequest("principal", null);
  app.addHook("onRequest", async (req) => {
    if (req.routeOptions.config?.public === true) return;
    const m = BEARER.exec(req.headers.authorization ?? "");
    if (m === null) {
      throw new SwitchbackError(
        "UNAUTHENTICATED",
        "the request carries no bearer token; send 'Authorization: Bearer <token>' (the admin token is printed at the vault's first start)",
      );
    }
    const holder = await findTokenHolder(deps.vdb.db, m[1]!, deps.now());
    if (holder === null) {
      throw new SwitchbackError(
        "UNAUTHENTICATED",
        "the bearer token is not one the vault issued (or it was revoked); use the admin token printed at the vault's first start, a token an admin made ('switchback tokens create') or an agent token from /v1/agent/register",
      );
    }
    req.principal = holder;
    if (holder.role === "admin") return;
    const allowed =
      holder.role === "viewer"
        ? viewerMayCall(req)
        : (req.routeOptions.config?.allow ?? []).includes(holder.role);
    if (!allowed) throw new SwitchbackError("FORBIDDEN", refusal(holder, req));
  });
}

export function principalOf(req: FastifyRequest): Principal {
  if (req.principal === null) throw new Error("principalOf called on a request the auth hook did not see");
  return req.principal;
}

/** Refuses (403) a non-admin token bound to another machine than `machineId`. */
export function requireOwnMachine(req: FastifyRequest, machineId: string): void {
  const p = principalOf(req);
  if (p.role === "admin") return;
  if (p.machineId !== null && p.machineId !== machineId) {
    throw new SwitchbackError(
      "FORBIDDEN",
      `token "${p.name}" belongs to machine ${p.machineId} and may not act for machine ${machineId}; the agent must use the token it got when it registered`,
    );
  }
  if (p.machineId === null && p.role !== "enrol") {
    throw new SwitchbackError(
      "FORBIDDEN",
      `token "${p.name}" is bound to no machine; register the agent again`,
    );
  }
}
