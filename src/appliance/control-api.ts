// The appliance's control API (routes and bodies: control-wire.ts): what the vault asks of a site
// whose appliance runs as its own process: the site's points, seed and apply (master target), deleting
// points, retention, the site's compute provider, and the replication directory the vault pushes on
// every change. Only the vault may call it: every request must carry the control secret this process
// made at its start and registered with the vault (compared in constant time).
import { createHash, timingSafeEqual } from "node:crypto";
import type { AddressInfo } from "node:net";
import type { Static } from "@sinclair/typebox";
import Fastify, { type FastifyInstance, type FastifyReply, LogController } from "fastify";
import { SwitchbackError } from "../domain/errors.ts";
import { PROBLEM_TYPE_PREFIX } from "../replication/wire.ts";
import {
  ApplyBodySchema,
  ChangePointBodySchema,
  CreateInstanceSchema,
  controlRoutes,
  DeleteQuerySchema,
  LabelBodySchema,
  PathsSchema,
  RetentionBodySchema,
  SeedBodySchema,
  StopBodySchema,
} from "./control-wire.ts";
import { type SiteDirectory, SiteDirectorySchema } from "./directory.ts";
import type { SiteRuntime } from "./site-runtime.ts";

export interface ControlApiOptions {
  host: string;
  port: number;
  secret: string;
  /** the appliance's name, for the site route */
  name: string;
  /** the site runtime once the appliance has registered and started it; null while starting */
  site: () => SiteRuntime | null;
  /** the vault pushed its directory */
  onDirectory: (d: SiteDirectory) => void;
  jsonLogs?: boolean;
}

function statusOf(code: string): number {
  if (code === "UNAUTHENTICATED") return 401;
  if (code === "APPLIANCE_STARTING") return 503;
  if (code === "INVALID_REQUEST") return 400;
  if (code.endsWith("_NOT_FOUND")) return 404;
  return 409;
}

function problem(reply: FastifyReply, status: number, code: string, detail: string): FastifyReply {
  return reply
    .code(status)
    .type("application/problem+json")
    .send(JSON.stringify({ type: `${PROBLEM_TYPE_PREFIX}${code}`, title: code, status, detail, code }));
}

export class ControlApi {
  readonly #o: ControlApiOptions;
  readonly #app: FastifyInstance;
  readonly #digest: Buffer;

  constructor(o: ControlApiOptions) {
    this.#o = o;
    this.#digest = createHash("sha256").update(o.secret, "utf8").digest();
    this.#app = Fastify({
      logger: {
        level: o.jsonLogs ? "info" : "warn",
        base: { role: "appliance-control" },
        stream: o.jsonLogs ? process.stdout : process.stderr,
      },
      logController: new LogController({ disableRequestLogging: true }),
      bodyLimit: 64 * 1024 * 1024,
      return503OnClosing: true,
    });
    this.#routes();
  }

  async start(): Promise<string> {
    await this.#app.listen({ host: this.#o.host, port: this.#o.port });
    const a = this.#app.server.address() as AddressInfo;
    return `http://${a.family === "IPv6" ? `[${a.address}]` : a.address}:${a.port}`;
  }

  close(): Promise<void> {
    return this.#app.close();
  }

  #site(): SiteRuntime {
    const s = this.#o.site();
    if (s === null) {
      throw new SwitchbackError(
        "APPLIANCE_STARTING",
        `appliance ${this.#o.name} is starting (registering with the vault, opening its datastores); retry in a moment`,
      );
    }
    return s;
  }

  #routes(): void {
    const app = this.#app;
    app.addHook("onRequest", async (req, reply) => {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? "");
      const given = createHash("sha256")
        .update(m?.[1] ?? "", "utf8")
        .digest();
      if (m === null || !timingSafeEqual(given, this.#digest)) {
        return problem(
          reply,
          401,
          "UNAUTHENTICATED",
          "only the vault may call an appliance's control API, with the secret the appliance registered",
        );
      }
    });
    app.setNotFoundHandler((req, reply) =>
      problem(
        reply,
        404,
        "ROUTE_NOT_FOUND",
        `no route ${req.method} ${req.url} on the appliance's control API`,
      ),
    );
    app.setErrorHandler((err: unknown, req, reply) => {
      if (err instanceof SwitchbackError) {
        const status = statusOf(err.code);
        if (status >= 500) req.log.debug({ code: err.code }, err.message);
        return problem(reply, status, err.code, err.message);
      }
      const e = err as { validation?: unknown; statusCode?: number; message?: string };
      if (e.validation !== undefined || (e.statusCode !== undefined && e.statusCode < 500))
        return problem(reply, 400, "INVALID_REQUEST", e.message ?? "invalid request");
      req.log.error({ err }, "unexpected error");
      return problem(
        reply,
        500,
        "INTERNAL",
        `the appliance failed unexpectedly: ${e.message ?? String(err)}`,
      );
    });

    type DsItem = { ds: string; item: string };
    app.get(controlRoutes.site, async () => {
      const s = this.#site();
      return { appliance: this.#o.name, site: s.id, provider: s.provider.kind, datastores: s.datastores() };
    });
    app.put<{ Body: SiteDirectory }>(
      controlRoutes.directory,
      { schema: { body: SiteDirectorySchema } },
      async (req) => {
        this.#o.onDirectory(req.body);
        return { ok: true };
      },
    );
    app.get<{ Params: DsItem }>("/v1/datastores/:ds/items/:item/points", async (req) => ({
      points: await this.#site().points(req.params.ds, req.params.item),
    }));
    app.get<{ Params: DsItem & { point: string } }>(
      "/v1/datastores/:ds/items/:item/points/:point",
      async (req) => this.#site().pointHeader(req.params.ds, req.params.item, req.params.point),
    );
    app.delete<{ Params: DsItem }>("/v1/datastores/:ds/items/:item/points", async (req) => ({
      deleted: await this.#site().deletePoints(req.params.ds, req.params.item),
    }));
    app.post<{ Params: DsItem; Body: Static<typeof SeedBodySchema> }>(
      "/v1/datastores/:ds/items/:item/seed",
      { schema: { body: SeedBodySchema } },
      async (req) => this.#site().seed(req.params.ds, req.params.item, req.body.disks),
    );
    app.post<{ Params: DsItem; Body: Static<typeof ApplyBodySchema> }>(
      "/v1/datastores/:ds/items/:item/apply",
      { schema: { body: ApplyBodySchema } },
      async (req) => this.#site().apply(req.params.ds, req.params.item, req.body.point, req.body.disks),
    );
    app.post<{ Params: { ds: string }; Body: Static<typeof RetentionBodySchema> }>(
      "/v1/datastores/:ds/retention",
      { schema: { body: RetentionBodySchema } },
      async (req) => this.#site().retention(req.params.ds, req.body.items, new Date(req.body.now)),
    );
    app.get<{ Params: { ds: string } }>("/v1/datastores/:ds/space", async (req) => ({
      freeBytes: await this.#site().freeBytes(req.params.ds),
    }));
    app.post<{ Body: Static<typeof PathsSchema> }>(
      controlRoutes.disksPresent,
      { schema: { body: PathsSchema } },
      async (req) => ({ present: await this.#site().disksPresent(req.body.paths) }),
    );

    // the site's compute provider; DiskSpec and PointDiskSource name datastores by the vault's ids
    app.post<{ Body: Static<typeof CreateInstanceSchema> }>(
      controlRoutes.instances,
      { schema: { body: CreateInstanceSchema } },
      async (req) => this.#site().provider.create(req.body.spec),
    );
    app.get<{ Params: { id: string } }>("/v1/instances/:id", async (req, reply) => {
      const info = await this.#site().provider.status(req.params.id);
      if (info === null)
        return problem(reply, 404, "INSTANCE_NOT_FOUND", `instance ${req.params.id} does not exist`);
      return info;
    });
    app.post<{ Params: { id: string } }>("/v1/instances/:id/start", async (req) =>
      this.#site().provider.start(req.params.id),
    );
    app.post<{ Params: { id: string }; Body: Static<typeof StopBodySchema> }>(
      "/v1/instances/:id/stop",
      { schema: { body: StopBodySchema } },
      async (req) =>
        this.#site().provider.stop(
          req.params.id,
          req.body.timeoutMs !== undefined ? { timeoutMs: req.body.timeoutMs } : {},
        ),
    );
    app.post<{ Params: { id: string }; Body: Static<typeof ChangePointBodySchema> }>(
      "/v1/instances/:id/change-point",
      { schema: { body: ChangePointBodySchema } },
      async (req) => this.#site().provider.changePoint(req.params.id, req.body),
    );
    app.delete<{ Params: { id: string }; Querystring: Static<typeof DeleteQuerySchema> }>(
      "/v1/instances/:id",
      { schema: { querystring: DeleteQuerySchema } },
      async (req) => {
        await this.#site().provider.delete(req.params.id, {
          ...(req.query.keepDisks !== undefined ? { keepDisks: req.query.keepDisks } : {}),
          ...(req.query.timeoutMs !== undefined ? { timeoutMs: req.query.timeoutMs } : {}),
        });
        return { ok: true };
      },
    );
    app.post<{ Params: { id: string }; Body: Static<typeof LabelBodySchema> }>(
      "/v1/instances/:id/identity-label",
      { schema: { body: LabelBodySchema } },
      async (req) => {
        await this.#site().labelInstance(req.params.id, req.body.identity);
        return { ok: true };
      },
    );
  }
}
