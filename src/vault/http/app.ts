// buildVaultApp: the vault's HTTP API as a Fastify instance, not yet listening. Order matters:
// problem documents and authentication first (they cover every route, /openapi.json and unknown
// paths), then @fastify/swagger (it collects routes as they are added), then each area's routes.
// To add an area: write src/vault/http/routes/<area>.ts exporting a VaultRoutes, add it to ROUTES.
import swagger from "@fastify/swagger";
import Fastify, {
  type FastifyError,
  type FastifyInstance,
  type FastifyServerOptions,
  LogController,
} from "fastify";
import { SwitchbackError } from "../../domain/errors.ts";
import { metricsRoutes } from "../metrics.ts";
import { installAuth } from "./auth.ts";
import type { VaultDeps } from "./deps.ts";
import { portalRoutes } from "./portal.ts";
import { frameworkProblem, problemStatus, sendProblem, validationDetail } from "./problems.ts";
import { agentRoutes } from "./routes/agent.ts";
import { alertsRoutes } from "./routes/alerts.ts";
import { appliancesRoutes } from "./routes/appliances.ts";
import { datastoresRoutes } from "./routes/datastores.ts";
import { itemsRoutes } from "./routes/items.ts";
import { jobsRoutes } from "./routes/jobs.ts";
import { machinesRoutes } from "./routes/machines.ts";
import { metaRoutes } from "./routes/meta.ts";
import { plansRoutes } from "./routes/plans.ts";
import { policiesRoutes } from "./routes/policies.ts";
import { sitesRoutes } from "./routes/sites.ts";
import { tokensRoutes } from "./routes/tokens.ts";

/** One area of the API: registers its routes (with `route()` from route.ts) as a Fastify plugin. */
export type VaultRoutes = (app: FastifyInstance, deps: VaultDeps) => void | Promise<void>;

/** Every area of the API, in the order they appear in the OpenAPI document. */
export const ROUTES: readonly VaultRoutes[] = [
  metaRoutes,
  sitesRoutes,
  appliancesRoutes,
  datastoresRoutes,
  policiesRoutes,
  machinesRoutes,
  agentRoutes,
  itemsRoutes,
  jobsRoutes,
  alertsRoutes,
  metricsRoutes,
  plansRoutes,
  tokensRoutes,
];

export const API_VERSION = "0.1.0";
/** The only routes served without a token: the portal's page and its static assets (portal.ts). */
const PUBLIC_ROUTES = new Set(["/", "/assets/:file"]);
const BODY_LIMIT_BYTES = 1024 * 1024;

export interface VaultAppOptions {
  /** Fastify's logger option (default: off) */
  logger?: FastifyServerOptions["logger"];
  /** the areas to register (default ROUTES); a test or an embedding can add its own */
  routes?: readonly VaultRoutes[];
  /** the built portal served at / (default portal/dist); null serves none */
  portalDir?: string | null;
}

export async function buildVaultApp(deps: VaultDeps, o: VaultAppOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: o.logger ?? false,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: BODY_LIMIT_BYTES,
    return503OnClosing: true,
    ajv: {
      customOptions: {
        // unknown fields are refused (schemas say additionalProperties: false), never silently dropped;
        // verbose keeps the offending value and the field's description for the 400's sentence
        removeAdditional: false,
        verbose: true,
      },
    },
  });

  app.setErrorHandler((err: FastifyError | SwitchbackError, req, reply) => {
    if (err instanceof SwitchbackError) {
      const status = problemStatus(err.code);
      if (status >= 500) req.log.error({ err }, err.message);
      return sendProblem(reply, err.code, err.message, req.url);
    }
    if (err.validation !== undefined) {
      return sendProblem(
        reply,
        "INVALID_REQUEST",
        validationDetail(err.validationContext, err.validation as never),
        req.url,
      );
    }
    const fw = frameworkProblem(err);
    if (fw !== null) return sendProblem(reply, fw.code, fw.detail, req.url);
    // never the message or stack of an unexpected error: they can hold paths, SQL or secrets
    req.log.error({ err }, "unexpected error");
    return sendProblem(
      reply,
      "INTERNAL",
      `the vault failed unexpectedly while handling ${req.method} ${req.routeOptions.url ?? req.url}; its log has the details (request ${req.id})`,
      req.url,
    );
  });
  app.setNotFoundHandler((req, reply) =>
    sendProblem(
      reply,
      "ROUTE_NOT_FOUND",
      `there is no route ${req.method} ${req.url.split("?")[0]}; GET /openapi.json lists them`,
      req.url,
    ),
  );
  installAuth(app, deps);
  // every route goes through route() (route.ts), so none escapes validation or the OpenAPI document
  app.addHook("onRoute", (r) => {
    const isPublic = (r.config as { public?: boolean } | undefined)?.public === true;
    if (isPublic && !(PUBLIC_ROUTES.has(r.url) && (r.method === "GET" || r.method === "HEAD"))) {
      throw new Error(
        `route ${String(r.method)} ${r.url} is marked public; only the portal's GET ${[...PUBLIC_ROUTES].join(", ")} may skip the token`,
      );
    }
    if (r.method !== "HEAD" && !isPublic && typeof r.schema?.operationId !== "string") {
      throw new Error(
        `route ${String(r.method)} ${r.url} has no operationId; declare it with route() from src/vault/http/route.ts`,
      );
    }
  });

  await app.register(swagger, {
    openapi: {
      openapi: "3.1.0",
      info: {
        title: "Switchback vault API",
        version: API_VERSION,
        description:
          "The control plane of Switchback. Errors are RFC 9457 problem documents with a stable `code`.",
      },
      components: {
        securitySchemes: { bearer: { type: "http", scheme: "bearer" } },
      },
      security: [{ bearer: [] }],
    },
  });
  if (o.portalDir !== null)
    await app.register(portalRoutes(o.portalDir === undefined ? {} : { dir: o.portalDir }));
  for (const r of o.routes ?? ROUTES) {
    await app.register(async (child) => {
      await r(child, deps);
    });
  }
  return app;
}
