// /v1/sites: the locations machines run at.
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { createSite, getSite, listSites } from "../../inventory/sites.ts";
import type { VaultDeps } from "../deps.ts";
import { route } from "../route.ts";
import { CreateSiteSchema, RefSchema, SiteSchema } from "../schemas.ts";

export function sitesRoutes(app: FastifyInstance, deps: VaultDeps): void {
  const db = deps.vdb.db;
  route(app, {
    method: "GET",
    url: "/v1/sites",
    operationId: "listSites",
    tags: ["sites"],
    summary: "List the sites",
    response: Type.Array(SiteSchema),
    handler: async () => listSites(db),
  });
  route(app, {
    method: "GET",
    url: "/v1/sites/:site",
    operationId: "getSite",
    tags: ["sites"],
    summary: "Show a site by id or name",
    params: Type.Object({ site: RefSchema }),
    response: SiteSchema,
    problems: [404],
    handler: async (req) => getSite(db, req.params.site),
  });
  route(app, {
    method: "POST",
    url: "/v1/sites",
    operationId: "createSite",
    tags: ["sites"],
    summary: "Create a site",
    body: CreateSiteSchema,
    status: 201,
    response: SiteSchema,
    problems: [409],
    handler: async (req) => createSite(db, req.body, deps.now()),
  });
}
