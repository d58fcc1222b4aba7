// Recovery plans at the vault's boundaries, as TypeBox schemas: the definition as the `plans` table
// and a plan job's parameters hold it (checked, defaults filled in), what the API takes (names or ids
// of items, actions as an operator writes them; src/domain/plan.ts checks them), and what it shows.
import { type Static, type TSchema, Type } from "@sinclair/typebox";
import {
  ACTION_KINDS,
  MAX_ACTION_TIMEOUT_S,
  PLAN_OPERATIONS,
  type PlanDefinition,
} from "../../domain/plan.ts";
import { NameSchema, RefSchema } from "../http/schemas.ts";

const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);

export const PlanOperationSchema = Type.Union(PLAN_OPERATIONS.map((o) => Type.Literal(o)));
const On = Type.Array(PlanOperationSchema, { minItems: 1 });

// ---- stored (plans.definition, plan job parameters) ----

const StoredActionSchema = Type.Union([
  Type.Object({
    kind: Type.Union([Type.Literal("script"), Type.Literal("machine-script")]),
    run: Type.String({ minLength: 1 }),
    timeoutSeconds: Type.Integer({ minimum: 1 }),
    on: On,
  }),
  Type.Object({ kind: Type.Literal("manual"), message: Type.String({ minLength: 1 }), on: On }),
]);

export const PlanDefinitionSchema = Type.Object({
  continueOnError: Type.Boolean(),
  groups: Type.Array(
    Type.Object({
      items: Type.Array(Type.String(), { minItems: 1 }),
      pre: Type.Array(StoredActionSchema),
      post: Type.Array(StoredActionSchema),
      continueOnError: Type.Optional(Type.Boolean()),
    }),
  ),
});

// the stored schema and the core's type describe the same thing
const _sameShape: PlanDefinition = {} as Static<typeof PlanDefinitionSchema>;
void _sameShape;

// ---- API input ----

export const ActionInputSchema = Type.Object(
  {
    kind: Type.String({ maxLength: 32, description: `one of ${ACTION_KINDS.join(", ")}` }),
    run: Type.Optional(
      Type.String({ maxLength: 4000, description: "script, machine-script: the command (sh -c)" }),
    ),
    message: Type.Optional(
      Type.String({ maxLength: 4000, description: "manual: what the operator must do before confirming" }),
    ),
    timeoutSeconds: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: MAX_ACTION_TIMEOUT_S,
        description: "script, machine-script: time limit (default 300)",
      }),
    ),
    on: Type.Optional(
      Type.Array(Type.String({ maxLength: 32 }), {
        maxItems: 16,
        description: `the plan operations it runs for (default failover, test-failover): ${PLAN_OPERATIONS.join(", ")}`,
      }),
    ),
  },
  { additionalProperties: false },
);

export const GroupInputSchema = Type.Object(
  {
    items: Type.Array(RefSchema, { maxItems: 1000, description: "replicated items (ids or names)" }),
    pre: Type.Optional(Type.Array(ActionInputSchema, { maxItems: 100 })),
    post: Type.Optional(Type.Array(ActionInputSchema, { maxItems: 100 })),
    continueOnError: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

const DefinitionFields = {
  continueOnError: Type.Optional(
    Type.Boolean({
      description: "a machine's failure is reported and the plan goes on (default false: it stops)",
    }),
  ),
  groups: Type.Optional(Type.Array(GroupInputSchema, { maxItems: 100 })),
};

export const CreatePlanSchema = Type.Object(
  { name: NameSchema, ...DefinitionFields },
  { additionalProperties: false },
);

export const ReplacePlanSchema = Type.Object(
  { name: Type.Optional(NameSchema), ...DefinitionFields },
  { additionalProperties: false },
);

export const AddActionSchema = Type.Object(
  {
    when: Type.Union([Type.Literal("pre"), Type.Literal("post")]),
    ...ActionInputSchema.properties,
  },
  { additionalProperties: false },
);

export const PlanOperationBodies = {
  "test-failover": Type.Object(
    { point: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })) },
    { additionalProperties: false },
  ),
  "test-failover-cleanup": Type.Object(
    { notes: Type.Optional(Type.String({ maxLength: 4000 })) },
    { additionalProperties: false },
  ),
  failover: Type.Object(
    {
      point: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
      shutdownSource: Type.Optional(Type.Boolean()),
      planned: Type.Optional(Type.Boolean()),
    },
    { additionalProperties: false },
  ),
  commit: Type.Object({}, { additionalProperties: false }),
  reprotect: Type.Object({}, { additionalProperties: false }),
  failback: Type.Object(
    {
      point: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
      shutdownSource: Type.Optional(Type.Boolean()),
      planned: Type.Optional(Type.Boolean()),
    },
    { additionalProperties: false },
  ),
} as const;

// ---- plan jobs ----

export const PlanJobOptionsSchema = Type.Object({
  point: Type.Optional(Type.String()),
  shutdownSource: Type.Optional(Type.Boolean()),
  planned: Type.Optional(Type.Boolean()),
  notes: Type.Optional(Type.String()),
});
export type PlanJobOptions = Static<typeof PlanJobOptionsSchema>;

export const PlanJobParamsSchema = Type.Object({
  /** the plan as it was when the job was created: a later change of the plan does not change the job */
  plan: Type.Object({ id: Type.String(), name: Type.String() }),
  definition: PlanDefinitionSchema,
  options: PlanJobOptionsSchema,
});
export type PlanJobParams = Static<typeof PlanJobParamsSchema>;

/** How one machine of a group did, in an items step's output and the summary. */
export const MachineResultSchema = Type.Object({
  item: Type.String(),
  itemId: Type.String(),
  group: Type.Integer({ description: "1-based" }),
  /** the item operation's job, null when it was refused before one started */
  job: Nullable(Type.String()),
  state: Type.Union([
    Type.Literal("succeeded"),
    Type.Literal("failed"),
    Type.Literal("cancelled"),
    Type.Literal("refused"),
  ]),
  error: Nullable(Type.Object({ code: Type.String(), message: Type.String() })),
  phase: Nullable(Type.String()),
});
export type MachineResult = Static<typeof MachineResultSchema>;

// ---- views ----

const ActionViewSchema = Type.Object({
  /** the step that runs it in a plan job of an operation it is on */
  step: Type.String(),
  kind: Type.String(),
  run: Type.Optional(Type.String()),
  message: Type.Optional(Type.String()),
  timeoutSeconds: Type.Optional(Type.Integer()),
  on: Type.Array(Type.String()),
});

export const PlanRunSchema = Type.Object({
  jobId: Type.String(),
  operation: Type.String(),
  state: Type.String(),
  waitingFor: Nullable(Type.String()),
  /** while the job waits at a manual action: the action and what the operator must do */
  waiting: Nullable(Type.Object({ step: Type.String(), group: Type.Integer(), message: Type.String() })),
  error: Nullable(Type.Object({ code: Type.String(), message: Type.String() })),
  createdBy: Nullable(Type.String()),
  createdAt: Type.String(),
  startedAt: Nullable(Type.String()),
  finishedAt: Nullable(Type.String()),
  steps: Type.Array(
    Type.Object({
      name: Type.String(),
      state: Type.String(),
      startedAt: Nullable(Type.String()),
      finishedAt: Nullable(Type.String()),
      output: Type.Unknown(),
    }),
  ),
});
export type PlanRun = Static<typeof PlanRunSchema>;

export const PlanViewSchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  continueOnError: Type.Boolean(),
  groups: Type.Array(
    Type.Object({
      /** 1-based, as the CLI and the URLs count */
      n: Type.Integer(),
      continueOnError: Type.Boolean({ description: "in effect for this group" }),
      items: Type.Array(
        Type.Object({
          id: Type.String(),
          name: Type.String(),
          phase: Type.String(),
          direction: Type.String(),
        }),
      ),
      pre: Type.Array(ActionViewSchema),
      post: Type.Array(ActionViewSchema),
    }),
  ),
  lastRun: Nullable(PlanRunSchema),
  createdAt: Type.String(),
  updatedAt: Type.String(),
});
export type PlanView = Static<typeof PlanViewSchema>;

/** What a plan operation would do to one machine: its own operation's decision, or why it is refused. */
export const PlanMachineDecisionSchema = Type.Object({
  group: Type.Integer({ description: "1-based" }),
  itemId: Type.String(),
  item: Type.String({ description: "the item's name" }),
  /** the item's own operation (a plan failback is each item's failover) */
  operation: Type.Union([Type.String(), Type.Null()]),
  decision: Type.Union([
    Type.Object({
      label: Type.String(),
      direction: Type.String(),
      irreversible: Type.Boolean(),
      consequences: Type.Array(Type.String()),
    }),
    Type.Null(),
  ]),
  refused: Type.Union([Type.Object({ code: Type.String(), message: Type.String() }), Type.Null()]),
});
export type PlanMachineDecision = Static<typeof PlanMachineDecisionSchema>;

export const PlanStartedSchema = Type.Object({
  job: Type.Union(
    [Type.Object({ id: Type.String(), kind: Type.String(), state: Type.String() }), Type.Null()],
    {
      description: "null for a dry run",
    },
  ),
  plan: Type.String(),
  operation: Type.String(),
  /** the steps the job will run, in order */
  steps: Type.Array(Type.String()),
  /** a dry run only: each machine's decision, group by group, as the job would ask for it now */
  machines: Type.Optional(Type.Array(PlanMachineDecisionSchema)),
});

export const PlanConfirmedSchema = Type.Object({
  job: Type.String(),
  step: Type.String(),
  message: Type.String(),
  accepted: Type.Boolean(),
});
