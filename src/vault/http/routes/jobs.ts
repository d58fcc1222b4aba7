// /v1/jobs: every long operation as a durable job — list, show with steps and timings, logs, watch
// live (server-sent events), cancel (refused after a point of no return), retry, and signals (the
// confirmation a manual action waits for).
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { SwitchbackError } from "../../../domain/errors.ts";
import { isFinished, parseJobId } from "../../jobs/types.ts";
import { checkRetry } from "../../operations/index.ts";
import { principalOf } from "../auth.ts";
import type { VaultDeps } from "../deps.ts";
import { route } from "../route.ts";
import { ProblemSchema } from "../schemas.ts";

const JobSchema = Type.Object(
  {
    id: Type.String(),
    kind: Type.String(),
    itemId: Type.Union([Type.String(), Type.Null()]),
    planId: Type.Union([Type.String(), Type.Null()]),
    state: Type.String(),
    waitingFor: Type.Union([Type.String(), Type.Null()]),
    step: Type.Integer(),
    progress: Type.Number(),
    error: Type.Union([Type.Object({ code: Type.String(), message: Type.String() }), Type.Null()]),
    createdBy: Type.Union([Type.String(), Type.Null()]),
    createdAt: Type.String(),
    startedAt: Type.Union([Type.String(), Type.Null()]),
    finishedAt: Type.Union([Type.String(), Type.Null()]),
    durationMs: Type.Union([Type.Number(), Type.Null()]),
    cancellable: Type.Boolean({
      description:
        "whether cancel would succeed now: the job is queued or waits and no step that cannot be undone has run",
    }),
    params: Type.Unknown(),
    steps: Type.Optional(
      Type.Array(
        Type.Object({
          idx: Type.Integer(),
          name: Type.String(),
          state: Type.String(),
          attempts: Type.Integer(),
          startedAt: Type.Union([Type.String(), Type.Null()]),
          finishedAt: Type.Union([Type.String(), Type.Null()]),
          durationMs: Type.Union([Type.Number(), Type.Null()]),
          output: Type.Unknown(),
        }),
      ),
    ),
  },
  { additionalProperties: false },
);

const LogSchema = Type.Object({
  id: Type.Integer(),
  at: Type.String(),
  level: Type.String(),
  step: Type.Union([Type.Integer(), Type.Null()]),
  message: Type.String(),
  data: Type.Unknown(),
});

const JobParams = Type.Object({ job: Type.String({ minLength: 1, maxLength: 64 }) });

function engineOf(deps: VaultDeps) {
  if (deps.dr === undefined) {
    throw new SwitchbackError(
      "VAULT_STARTING",
      "the vault's job engine is not running yet; retry in a moment",
    );
  }
  return deps.dr.engine;
}

export function jobsRoutes(app: FastifyInstance, deps: VaultDeps): void {
  route(app, {
    method: "GET",
    url: "/v1/jobs",
    operationId: "listJobs",
    tags: ["jobs"],
    summary: "List jobs, newest first",
    query: Type.Object(
      {
        item: Type.Optional(Type.String({ maxLength: 64 })),
        plan: Type.Optional(Type.String({ maxLength: 64 })),
        state: Type.Optional(
          Type.Union(
            ["queued", "running", "waiting", "succeeded", "failed", "cancelled"].map((s) => Type.Literal(s)),
          ),
        ),
        kind: Type.Optional(
          Type.String({ minLength: 1, maxLength: 64, description: "only jobs of this kind, e.g. failover" }),
        ),
        limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
        before: Type.Optional(Type.String({ maxLength: 64 })),
      },
      { additionalProperties: false },
    ),
    response: Type.Array(JobSchema),
    handler: async (req) => {
      const q = req.query;
      let itemId = q.item;
      if (itemId !== undefined) {
        const row = await deps.vdb.db
          .selectFrom("items")
          .select("id")
          .where((eb) => eb.or([eb("id", "=", itemId as string), eb("name", "=", itemId as string)]))
          .executeTakeFirst();
        itemId = row?.id ?? itemId;
      }
      return engineOf(deps).list({
        ...(itemId !== undefined ? { itemId } : {}),
        ...(q.plan !== undefined ? { planId: q.plan } : {}),
        ...(q.state !== undefined ? { state: q.state as never } : {}),
        ...(q.kind !== undefined ? { kind: q.kind } : {}),
        limit: q.limit ?? 50,
        ...(q.before !== undefined ? { before: parseJobId(q.before) } : {}),
      }) as never;
    },
  });
  route(app, {
    method: "GET",
    url: "/v1/jobs/:job",
    operationId: "getJob",
    tags: ["jobs"],
    summary: "Show a job with its steps, their timings and outputs",
    params: JobParams,
    response: JobSchema,
    problems: [404],
    handler: async (req) => engineOf(deps).get(parseJobId(req.params.job)) as never,
  });
  route(app, {
    method: "GET",
    url: "/v1/jobs/:job/logs",
    operationId: "getJobLogs",
    tags: ["jobs"],
    summary: "A job's log lines after a given line id",
    params: JobParams,
    query: Type.Object(
      { after: Type.Optional(Type.Integer({ minimum: 0 })) },
      { additionalProperties: false },
    ),
    response: Type.Array(LogSchema),
    problems: [404],
    handler: async (req) => engineOf(deps).logs(parseJobId(req.params.job), req.query.after ?? 0) as never,
  });
  for (const verb of ["cancel", "retry"] as const) {
    route(app, {
      method: "POST",
      url: `/v1/jobs/:job/${verb}`,
      operationId: `${verb}Job`,
      tags: ["jobs"],
      summary:
        verb === "cancel"
          ? "Cancel a job that has not passed its point of no return"
          : "Retry a failed job from the step that failed",
      params: JobParams,
      response: JobSchema,
      problems: [404, 409],
      handler: async (req) => {
        const e = engineOf(deps);
        const id = parseJobId(req.params.job);
        if (verb === "retry" && deps.dr !== undefined) await checkRetry(deps.dr.ops, await e.get(id));
        return (
          verb === "cancel" ? e.cancel(id, principalOf(req).name) : e.retry(id, principalOf(req).name)
        ) as never;
      },
    });
  }
  route(app, {
    method: "POST",
    url: "/v1/jobs/:job/signals/:name",
    operationId: "signalJob",
    tags: ["jobs"],
    summary: "Send a job the signal it waits for (a manual action's confirmation)",
    params: Type.Object({
      job: JobParams.properties.job,
      name: Type.String({ minLength: 1, maxLength: 64 }),
    }),
    body: Type.Object({ data: Type.Optional(Type.Unknown()) }, { additionalProperties: false }),
    response: Type.Object({ accepted: Type.Boolean() }),
    problems: [404, 409],
    handler: async (req) => ({
      accepted: await engineOf(deps).signal(
        parseJobId(req.params.job),
        req.params.name,
        req.body.data ?? null,
        principalOf(req).name,
      ),
    }),
  });
  // live events: text/event-stream, one `data:` line per JobEvent, closed when the job finishes, or
  // when the vault closes (an open portal tab must not hold a shutdown until it leaves)
  const watchers = new Set<AbortController>();
  app.addHook("preClose", async () => {
    for (const ac of watchers) ac.abort();
  });
  app.get(
    "/v1/jobs/:job/events",
    {
      schema: {
        operationId: "watchJob",
        tags: ["jobs"],
        summary: "Watch a job live (server-sent events: job, step and log events until it finishes)",
        params: JobParams,
        response: {
          200: {
            description: "text/event-stream of JobEvent",
            content: { "text/event-stream": { schema: { type: "string" } } },
          },
          ...Object.fromEntries(
            [400, 401, 403, 404, 500].map((status) => [
              status,
              {
                description: "a problem document",
                content: { "application/problem+json": { schema: ProblemSchema } },
              },
            ]),
          ),
        },
      },
      config: { allow: [] },
    },
    async (req, reply) => {
      const e = engineOf(deps);
      const id = parseJobId((req.params as { job: string }).job);
      const first = await e.get(id);
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        "content-type": "text/event-stream",
        "cache-control": "no-cache",
        connection: "keep-alive",
      });
      const ac = new AbortController();
      watchers.add(ac);
      req.raw.on("close", () => ac.abort());
      const send = (ev: unknown) => res.write(`data: ${JSON.stringify(ev)}\n\n`);
      send({ type: "job", job: first });
      if (!isFinished(first.state)) {
        try {
          for await (const ev of e.watch(id, { signal: ac.signal })) {
            send(ev);
            if (ev.type === "job" && isFinished(ev.job.state)) break;
          }
        } catch {
          // the client went away
        }
      }
      watchers.delete(ac);
      res.end();
    },
  );
}
