// /v1/plans: recovery plans — ordered groups of items with pre/post actions. Create (with the whole
// definition), list, show (groups, actions, each item's phase, the last run), replace, delete, add a
// group, add an action to group n (1-based); each plan operation as POST /v1/plans/{plan}/{operation}
// answers 202 with its job; POST …/confirm confirms the manual action the plan's job waits at.
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { SwitchbackError } from "../../../domain/errors.ts";
import { PLAN_OPERATIONS, type PlanOperation } from "../../../domain/plan.ts";
import { previewPlanOperation } from "../../plans/jobs.ts";
import {
  AddActionSchema,
  CreatePlanSchema,
  GroupInputSchema,
  PlanConfirmedSchema,
  PlanOperationBodies,
  PlanStartedSchema,
  PlanViewSchema,
  ReplacePlanSchema,
} from "../../plans/schema.ts";
import {
  addAction,
  addGroup,
  confirmPlan,
  createPlan,
  deletePlan,
  type LoadedPlan,
  listPlans,
  loadPlan,
  planViews,
  replacePlan,
  startPlanOperation,
} from "../../plans/store.ts";
import { principalOf } from "../auth.ts";
import type { VaultDeps } from "../deps.ts";
import { route } from "../route.ts";
import { RefSchema } from "../schemas.ts";

const PlanParams = Type.Object({ plan: RefSchema });

const SUMMARIES: Record<PlanOperation, string> = {
  "test-failover": "Drill the whole plan: test failover group by group, with the plan's actions",
  "test-failover-cleanup": "Clean up the plan's drill copies (all groups at once)",
  failover:
    "Fail the plan's items over, group by group (point, shutdownSource, planned go to every item); cannot be cancelled once an item's failover began",
  commit: "Commit the failover (or failback) of every item of the plan (all groups at once)",
  reprotect: "Reprotect every item of the plan (original location), group by group",
  failback: "Fail the plan's reprotected items back home, group by group, with the plan's failback actions",
};

export function plansRoutes(app: FastifyInstance, deps: VaultDeps): void {
  const db = deps.vdb.db;
  const views = (plans: LoadedPlan[]) => planViews(db, deps.dr?.engine ?? null, plans);
  const one = async (p: LoadedPlan) => (await views([p]))[0]!;
  const engine = () => {
    if (deps.dr === undefined) {
      throw new SwitchbackError(
        "VAULT_STARTING",
        "the vault's disaster-recovery runtime is not running yet; retry in a moment",
      );
    }
    return deps.dr.engine;
  };

  route(app, {
    method: "GET",
    url: "/v1/plans",
    operationId: "listPlans",
    tags: ["plans"],
    summary: "List the recovery plans with their groups and last run",
    response: Type.Array(PlanViewSchema),
    handler: async () => views(await listPlans(db)),
  });
  route(app, {
    method: "POST",
    url: "/v1/plans",
    operationId: "createPlan",
    tags: ["plans"],
    summary: "Create a recovery plan with its whole definition (groups may come later)",
    description:
      "Groups run in order, the items of a group at once. Each action has a kind (script: a command the vault runs; machine-script: a command run in each machine of the group; manual: the plan waits for 'confirm'), and the operations it runs for (default failover and test-failover).",
    body: CreatePlanSchema,
    status: 201,
    response: PlanViewSchema,
    problems: [409],
    handler: async (req) => one(await createPlan(db, req.body, deps.now())),
  });
  route(app, {
    method: "GET",
    url: "/v1/plans/:plan",
    operationId: "getPlan",
    tags: ["plans"],
    summary: "Show a plan: groups with their items' phases, actions, and the last run with its steps",
    params: PlanParams,
    response: PlanViewSchema,
    problems: [404],
    handler: async (req) => one(await loadPlan(db, req.params.plan)),
  });
  route(app, {
    method: "PUT",
    url: "/v1/plans/:plan",
    operationId: "replacePlan",
    tags: ["plans"],
    summary: "Replace a plan's definition (and name); refused while a job of the plan runs",
    params: PlanParams,
    body: ReplacePlanSchema,
    response: PlanViewSchema,
    problems: [404, 409],
    handler: async (req) => one(await replacePlan(db, req.params.plan, req.body, deps.now())),
  });
  route(app, {
    method: "DELETE",
    url: "/v1/plans/:plan",
    operationId: "deletePlan",
    tags: ["plans"],
    summary: "Delete a plan (its jobs stay as history); refused while a job of the plan runs",
    params: PlanParams,
    response: PlanViewSchema,
    problems: [404, 409],
    handler: async (req) => {
      const p = await loadPlan(db, req.params.plan);
      const view = await one(p);
      await deletePlan(db, p.row.id);
      return view;
    },
  });
  route(app, {
    method: "POST",
    url: "/v1/plans/:plan/groups",
    operationId: "addPlanGroup",
    tags: ["plans"],
    summary: "Add a group after the plan's last one",
    params: PlanParams,
    body: GroupInputSchema,
    status: 201,
    response: PlanViewSchema,
    problems: [404, 409],
    handler: async (req) => one(await addGroup(db, req.params.plan, req.body, deps.now())),
  });
  route(app, {
    method: "POST",
    url: "/v1/plans/:plan/groups/:n/actions",
    operationId: "addPlanAction",
    tags: ["plans"],
    summary: "Add an action before (pre) or after (post) the items of group n (1-based)",
    params: Type.Object({ plan: RefSchema, n: Type.Integer({ minimum: 1, maximum: 1000 }) }),
    body: AddActionSchema,
    status: 201,
    response: PlanViewSchema,
    problems: [404, 409],
    handler: async (req) => {
      const { when, ...action } = req.body;
      return one(await addAction(db, req.params.plan, req.params.n, when, action, deps.now()));
    },
  });
  route(app, {
    method: "POST",
    url: "/v1/plans/:plan/confirm",
    operationId: "confirmPlan",
    tags: ["plans"],
    summary: "Confirm the manual action the plan's running job waits at (409 when it waits for none)",
    params: PlanParams,
    body: Type.Object(
      {
        step: Type.Optional(
          Type.String({
            minLength: 1,
            maxLength: 200,
            description:
              "the manual action's step the operator was shown; refused with PLAN_CONFIRM_STALE when the job waits at another one",
          }),
        ),
      },
      { additionalProperties: false },
    ),
    response: PlanConfirmedSchema,
    problems: [404, 409],
    handler: async (req) => confirmPlan(db, engine(), req.params.plan, principalOf(req).name, req.body?.step),
  });
  for (const op of PLAN_OPERATIONS) {
    route(app, {
      method: "POST",
      url: `/v1/plans/:plan/${op}`,
      operationId: `plan_${op.replaceAll("-", "_")}`,
      tags: ["plans"],
      summary: SUMMARIES[op],
      params: PlanParams,
      query: Type.Object(
        {
          dryRun: Type.Optional(
            Type.Boolean({
              description:
                "decide only: each machine's own operation and the vault's decision or refusal for it now, group by group",
            }),
          ),
        },
        { additionalProperties: false },
      ),
      body: PlanOperationBodies[op],
      status: 202,
      response: PlanStartedSchema,
      problems: [404, 409],
      handler: async (req) => {
        const b = (req.body ?? {}) as Record<string, unknown>;
        const options = Object.fromEntries(
          ["point", "shutdownSource", "planned", "notes"].flatMap((k) =>
            b[k] !== undefined ? [[k, b[k]]] : [],
          ),
        );
        if (req.query.dryRun === true) {
          if (deps.dr === undefined) engine(); // the same VAULT_STARTING answer
          const d = await previewPlanOperation(deps.dr!.ops, req.params.plan, op, options);
          return { job: null, plan: d.plan.row.name, operation: op, steps: d.steps, machines: d.machines };
        }
        const r = await startPlanOperation(db, engine(), req.params.plan, op, options, principalOf(req).name);
        return {
          job: { id: r.job.id, kind: r.job.kind, state: r.job.state },
          plan: r.plan.row.name,
          operation: op,
          steps: r.steps,
        };
      },
    });
  }
}
