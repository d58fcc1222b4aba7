// The one way a vault route is declared: a RouteSpec names its operation (operationId, tags, summary),
// who may call it, its TypeBox schemas (params, query, body, the success response) and a handler whose
// argument types come from those schemas. From the same spec Fastify validates the request, serializes
// the response (unknown fields dropped) and @fastify/swagger writes the OpenAPI operation, so the
// three cannot drift. Every operation documents the problem documents it can answer with.
import type { Static, TSchema } from "@sinclair/typebox";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { TokenRole } from "../inventory/tokens.ts";
import type { Principal } from "./auth.ts";
import { ProblemSchema } from "./schemas.ts";

type In<S> = S extends TSchema ? Static<S> : undefined;

export type RouteRequest<P, Q, B> = Omit<FastifyRequest, "params" | "query" | "body"> & {
  params: In<P>;
  query: In<Q>;
  body: In<B>;
  principal: Principal;
};

export interface RouteSpec<
  P extends TSchema | undefined,
  Q extends TSchema | undefined,
  B extends TSchema | undefined,
  R extends TSchema,
> {
  method: "GET" | "POST" | "PATCH" | "PUT" | "DELETE";
  url: string;
  operationId: string;
  tags: string[];
  summary: string;
  description?: string;
  /** roles that may call it besides admin (default: admin only; viewers read, see auth.ts viewerMayCall) */
  allow?: readonly TokenRole[];
  /** a GET that viewer tokens may not make (what it answers is for admins only) */
  noViewer?: boolean;
  params?: P;
  query?: Q;
  body?: B;
  /** status of a success (default 200) */
  status?: 200 | 201 | 202;
  response: R;
  /** problem statuses it answers with besides 400, 401, 403 and 500 (404, 409, …) */
  problems?: readonly number[];
  handler: (req: RouteRequest<P, Q, B>, reply: FastifyReply) => Promise<Static<R>>;
}

const PROBLEM_DESCRIPTIONS: Record<number, string> = {
  400: "the request is not valid (code INVALID_REQUEST names the field)",
  401: "no valid bearer token (UNAUTHENTICATED)",
  403: "the token's role may not do this (FORBIDDEN)",
  404: "what the path names does not exist",
  409: "refused in the current state (the code names why)",
  500: "the vault failed unexpectedly (INTERNAL)",
  503: "the vault is shutting down",
};

function problemResponse(status: number) {
  return {
    description: PROBLEM_DESCRIPTIONS[status] ?? "a problem document",
    content: { "application/problem+json": { schema: ProblemSchema } },
  };
}

export function route<
  P extends TSchema | undefined = undefined,
  Q extends TSchema | undefined = undefined,
  B extends TSchema | undefined = undefined,
  R extends TSchema = TSchema,
>(app: FastifyInstance, spec: RouteSpec<P, Q, B, R>): void {
  const status = spec.status ?? 200;
  // the schema's own description, if any, describes the success response in the OpenAPI document
  const response: Record<number, unknown> = {
    [status]: { description: status === 201 ? "created" : "success", ...spec.response },
  };
  for (const s of new Set([400, 401, 403, ...(spec.problems ?? []), 500])) response[s] = problemResponse(s);
  app.route({
    method: spec.method,
    url: spec.url,
    config: { allow: spec.allow ?? [], ...(spec.noViewer === true ? { noViewer: true } : {}) },
    schema: {
      operationId: spec.operationId,
      tags: spec.tags,
      summary: spec.summary,
      ...(spec.description !== undefined ? { description: spec.description } : {}),
      ...(spec.params !== undefined ? { params: spec.params } : {}),
      ...(spec.query !== undefined ? { querystring: spec.query } : {}),
      ...(spec.body !== undefined ? { body: spec.body } : {}),
      response,
    },
    handler: async (req, reply) => {
      const result = await spec.handler(req as unknown as RouteRequest<P, Q, B>, reply);
      reply.code(status);
      return result;
    },
  });
}
