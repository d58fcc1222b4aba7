// /v1/datastores: where sites keep replica data and recovery points.
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { createLocalDatastore, getDatastore, listDatastores } from "../../inventory/datastores.ts";
import type { VaultDeps } from "../deps.ts";
import { route } from "../route.ts";
import { CreateDatastoreSchema, DatastoreSchema, RefSchema, SiteFilterSchema } from "../schemas.ts";

export function datastoresRoutes(app: FastifyInstance, deps: VaultDeps): void {
  const db = deps.vdb.db;
  route(app, {
    method: "GET",
    url: "/v1/datastores",
    operationId: "listDatastores",
    tags: ["datastores"],
    summary: "List the datastores (capacity read now), optionally of one site",
    query: SiteFilterSchema,
    response: Type.Array(DatastoreSchema),
    problems: [404],
    handler: async (req) => listDatastores(db, deps.now(), req.query),
  });
  route(app, {
    method: "GET",
    url: "/v1/datastores/:datastore",
    operationId: "getDatastore",
    tags: ["datastores"],
    summary: "Show a datastore by id or name (capacity read now)",
    params: Type.Object({ datastore: RefSchema }),
    response: DatastoreSchema,
    problems: [404],
    handler: async (req) => getDatastore(db, req.params.datastore, deps.now()),
  });
  route(app, {
    method: "POST",
    url: "/v1/datastores",
    operationId: "createDatastore",
    tags: ["datastores"],
    summary: "Create a local datastore: initialise its folder (or adopt the datastore there)",
    body: CreateDatastoreSchema,
    status: 201,
    response: DatastoreSchema,
    problems: [404, 409, 422],
    handler: async (req) => createLocalDatastore(db, req.body, deps.now()),
  });
}
