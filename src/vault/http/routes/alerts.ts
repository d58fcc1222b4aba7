// /v1/alerts: what the alerts service raised and cleared (RPO breach, replication stalled, agent or
// appliance lost, job failed), newest first; /v1/settings/alert-webhook: where their events are sent.
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import {
  AlertKindSchema,
  AlertRecordSchema,
  getAlert,
  getAlertWebhook,
  listAlerts,
  setAlertWebhook,
  toAlertRecord,
} from "../../alerts/store.ts";
import type { VaultDeps } from "../deps.ts";
import { route } from "../route.ts";

const WebhookSchema = Type.Object(
  {
    url: Type.Union(
      [Type.String({ minLength: 1, maxLength: 2048, pattern: "^https?://[^\\s]+$" }), Type.Null()],
      {
        description: "http(s) URL that alert events are POSTed to as JSON {alert, event}; null: send none",
      },
    ),
  },
  { additionalProperties: false },
);

export function alertsRoutes(app: FastifyInstance, deps: VaultDeps): void {
  const db = deps.vdb.db;
  route(app, {
    method: "GET",
    url: "/v1/alerts",
    operationId: "listAlerts",
    tags: ["alerts"],
    summary: "List alerts, newest first (open ones only with open=true)",
    query: Type.Object(
      {
        open: Type.Optional(
          Type.Boolean({ description: "true: only open alerts; false: only cleared ones" }),
        ),
        kind: Type.Optional(AlertKindSchema),
        subject: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
        limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
      },
      { additionalProperties: false },
    ),
    response: Type.Array(AlertRecordSchema),
    handler: async (req) => {
      const q = req.query;
      const rows = await listAlerts(db, {
        ...(q.open !== undefined ? { open: q.open } : {}),
        ...(q.kind !== undefined ? { kind: q.kind } : {}),
        ...(q.subject !== undefined ? { subject: q.subject } : {}),
        limit: q.limit ?? 100,
      });
      return rows.map(toAlertRecord);
    },
  });
  route(app, {
    method: "GET",
    url: "/v1/alerts/:alert",
    operationId: "getAlert",
    tags: ["alerts"],
    summary: "Show an alert with its delivery to the webhook",
    params: Type.Object({ alert: Type.String({ minLength: 1, maxLength: 64 }) }),
    response: AlertRecordSchema,
    problems: [404],
    handler: async (req) => toAlertRecord(await getAlert(db, req.params.alert)),
  });
  route(app, {
    method: "GET",
    url: "/v1/settings/alert-webhook",
    operationId: "getAlertWebhook",
    tags: ["alerts"],
    summary: "The webhook alert events are sent to",
    response: WebhookSchema,
    handler: async () => ({ url: await getAlertWebhook(db) }),
  });
  route(app, {
    method: "PUT",
    url: "/v1/settings/alert-webhook",
    operationId: "setAlertWebhook",
    tags: ["alerts"],
    summary: "Set (or with null remove) the webhook alert events are sent to",
    description:
      'Each event is POSTed as JSON {"alert": {…}, "event": "raised" | "cleared"}; a receiver that does not answer 2xx is retried with doubling backoff up to 5 min between attempts (delivery is at least once: dedupe on alert.id and event). `switchback server --alert-webhook URL` sets it at start.',
    body: WebhookSchema,
    response: WebhookSchema,
    handler: async (req) => ({ url: await setAlertWebhook(db, req.body.url) }),
  });
}
