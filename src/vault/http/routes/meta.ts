// The API's description of itself: GET /openapi.json (OpenAPI 3.1, from the routes' own schemas).
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { route } from "../route.ts";

export function metaRoutes(app: FastifyInstance): void {
  route(app, {
    method: "GET",
    url: "/openapi.json",
    operationId: "getOpenApi",
    tags: ["meta"],
    summary: "The OpenAPI 3.1 document of this API",
    response: Type.Object({ openapi: Type.String() }, { additionalProperties: true }),
    handler: async () => app.swagger() as { openapi: string },
  });
}
