// Bearer-token authentication and role checks for every vault route (including /openapi.json and
// unknown paths). One hook authenticates (401 UNAUTHENTICATED) and authorises by the route's declared
// roles (403 FORBIDDEN); admin may call everything, other roles only the routes that name them.
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
  }
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
        "the bearer token is not one the vault issued (or it was revoked); use the admin token printed at the vault's first start or an agent token from /v1/agent/register",
      );
    }
    req.principal = holder;
    if (holder.role === "admin") return;
    const allow = req.routeOptions.config?.allow ?? [];
    if (!allow.includes(holder.role)) {
      throw new SwitchbackError(
        "FORBIDDEN",
        `token "${holder.name}" has role ${holder.role}, which may not call ${req.method} ${req.routeOptions.url ?? req.url}; ${holder.role === "agent" ? "an agent token may call only /v1/agent/* for its own machine" : "use an admin token"}`,
      );
    }
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
