// /v1/machines and /v1/enrol-tokens: the machines the vault knows, and the tokens they register with.
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { createMachine, getMachine, getMachineRow, listMachines } from "../../inventory/machines.ts";
import { createToken } from "../../inventory/tokens.ts";
import type { VaultDeps } from "../deps.ts";
import { route } from "../route.ts";
import {
  CreateMachineSchema,
  EnrolTokenRequestSchema,
  EnrolTokenSchema,
  MachineSchema,
  RefSchema,
  SiteFilterSchema,
} from "../schemas.ts";

export function machinesRoutes(app: FastifyInstance, deps: VaultDeps): void {
  const db = deps.vdb.db;
  const clock = () => ({ now: deps.now(), heartbeatIntervalMs: deps.heartbeatIntervalMs });
  route(app, {
    method: "GET",
    url: "/v1/machines",
    operationId: "listMachines",
    tags: ["machines"],
    summary: "List the machines, optionally of one site",
    query: SiteFilterSchema,
    response: Type.Array(MachineSchema),
    problems: [404],
    handler: async (req) => listMachines(db, clock(), req.query),
  });
  route(app, {
    method: "GET",
    url: "/v1/machines/:machine",
    operationId: "getMachine",
    tags: ["machines"],
    summary: "Show a machine by id or name, with its reported properties and health",
    params: Type.Object({ machine: RefSchema }),
    response: MachineSchema,
    problems: [404],
    handler: async (req) => getMachine(db, req.params.machine, clock()),
  });
  route(app, {
    method: "POST",
    url: "/v1/machines",
    operationId: "createMachine",
    tags: ["machines"],
    summary: "Define a machine for the `process` provider: a boot command and disk sizes",
    body: CreateMachineSchema,
    status: 201,
    response: MachineSchema,
    problems: [404, 409],
    handler: async (req) => createMachine(db, req.body, clock()),
  });
  route(app, {
    method: "POST",
    url: "/v1/enrol-tokens",
    operationId: "createEnrolToken",
    tags: ["machines"],
    summary: "Create a token an agent registers with (SWITCHBACK_ENROL_TOKEN), optionally for one machine",
    body: EnrolTokenRequestSchema,
    status: 201,
    response: EnrolTokenSchema,
    problems: [404],
    handler: async (req) => {
      const machineId =
        req.body.machine === undefined ? null : (await getMachineRow(db, req.body.machine)).id;
      const t = await createToken(db, {
        role: "enrol",
        name: req.body.name ?? (machineId === null ? "enrol" : `enrol ${machineId}`),
        machineId,
        now: deps.now(),
      });
      return { id: t.id, token: t.token, machineId };
    },
  });
}
