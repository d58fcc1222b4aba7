// /v1/whoami: the caller's own token. /v1/tokens: operators' named tokens (roles admin and viewer):
// list, create (the secret shown once), revoke. Machines' tokens (agent, enrol, appliance) are made
// where machines are (enrol tokens, registration, appliance tokens) and listed here only with all=true.
import { type Static, Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { SwitchbackError } from "../../../domain/errors.ts";
import { createOperatorToken, getToken, listTokens, revokeOperatorToken } from "../../inventory/tokens.ts";
import { principalOf } from "../auth.ts";
import type { VaultDeps } from "../deps.ts";
import { route } from "../route.ts";
import { NameSchema, RefSchema, TimeSchema } from "../schemas.ts";

const RoleSchema = Type.Union(
  [
    Type.Literal("admin"),
    Type.Literal("viewer"),
    Type.Literal("agent"),
    Type.Literal("enrol"),
    Type.Literal("appliance"),
  ],
  { description: "admin: everything; viewer: every read an operator makes; the others are machines'" },
);
const OperatorRoleSchema = Type.Union([Type.Literal("admin"), Type.Literal("viewer")], {
  description: "admin: everything; viewer: every read an operator makes (GET), no settings, nothing else",
});

export const WhoamiSchema = Type.Object({
  tokenId: Type.String(),
  name: Type.String(),
  role: RoleSchema,
  createdAt: TimeSchema,
  lastUsedAt: Type.Union([TimeSchema, Type.Null()], {
    description: "the token's last use as recorded (at most once a minute; this request may not show yet)",
  }),
});
export type Whoami = Static<typeof WhoamiSchema>;

export const TokenViewSchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  role: RoleSchema,
  createdAt: TimeSchema,
  lastUsedAt: Type.Union([TimeSchema, Type.Null()], { description: "recorded at most once a minute" }),
  createdBy: Type.Union([Type.String(), Type.Null()], {
    description: "the name of the token that created it; null: the vault's own (the first admin token)",
  }),
  machineId: Type.Union([Type.String(), Type.Null()], {
    description: "agent and enrol tokens: the machine it is bound to",
  }),
  current: Type.Boolean({ description: "the token this request was made with" }),
});
export type TokenView = Static<typeof TokenViewSchema>;

const CreateTokenSchema = Type.Object(
  {
    name: { ...NameSchema, description: "unique among operator tokens: who holds it (alice, grafana, ci)" },
    role: OperatorRoleSchema,
  },
  { additionalProperties: false },
);

export const NewTokenSchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  role: OperatorRoleSchema,
  token: Type.String({ description: "the secret: shown this once, only its SHA-256 is kept" }),
});
export type NewTokenView = Static<typeof NewTokenSchema>;

export const RevokedTokenSchema = Type.Object({ revoked: Type.String({ description: "the token's id" }) });

export function tokensRoutes(app: FastifyInstance, deps: VaultDeps): void {
  const db = deps.vdb.db;
  route(app, {
    method: "GET",
    url: "/v1/whoami",
    operationId: "whoami",
    tags: ["tokens"],
    summary: "The token this request was made with: its id, name and role",
    allow: ["viewer", "agent", "enrol", "appliance"],
    response: WhoamiSchema,
    handler: async (req) => {
      const me = principalOf(req);
      const t = await getToken(db, me.tokenId);
      if (t === null) {
        throw new SwitchbackError(
          "UNAUTHENTICATED",
          `token "${me.name}" was revoked while this request ran; use another token`,
        );
      }
      return { tokenId: t.id, name: t.name, role: t.role, createdAt: t.createdAt, lastUsedAt: t.lastUsedAt };
    },
  });
  route(app, {
    method: "GET",
    url: "/v1/tokens",
    operationId: "listTokens",
    tags: ["tokens"],
    summary: "List the operator tokens (admin, viewer), oldest first; never their secrets",
    noViewer: true,
    description:
      "`all=true` lists the machines' tokens too (agent, enrol, appliance). A token's secret is shown only when it is created.",
    query: Type.Object(
      {
        all: Type.Optional(
          Type.Boolean({ description: "true: every token, the machines' (agent, enrol, appliance) too" }),
        ),
      },
      { additionalProperties: false },
    ),
    response: Type.Array(TokenViewSchema),
    handler: async (req) => {
      const me = principalOf(req).tokenId;
      const list = await listTokens(db, { all: req.query.all === true });
      return list.map((t) => ({ ...t, current: t.id === me }));
    },
  });
  route(app, {
    method: "POST",
    url: "/v1/tokens",
    operationId: "createToken",
    tags: ["tokens"],
    summary: "Create a named operator token (admin or viewer); its secret is in this answer only",
    body: CreateTokenSchema,
    status: 201,
    response: NewTokenSchema,
    problems: [409],
    handler: async (req) => {
      const t = await createOperatorToken(deps.vdb, {
        name: req.body.name,
        role: req.body.role,
        createdBy: principalOf(req).name,
        now: deps.now(),
      });
      return { id: t.id, name: t.name, role: t.role, token: t.token };
    },
  });
  route(app, {
    method: "DELETE",
    url: "/v1/tokens/:token",
    operationId: "revokeToken",
    tags: ["tokens"],
    summary: "Revoke an operator token by id or name: it stops working at once",
    description:
      "The last admin token is never revoked (409 TOKEN_LAST_ADMIN). Revoking the caller's own token is allowed while another admin token remains. Machines' tokens are refused (409 TOKEN_NOT_OPERATOR).",
    params: Type.Object({ token: RefSchema }),
    response: RevokedTokenSchema,
    problems: [404, 409],
    handler: async (req) => {
      const t = await revokeOperatorToken(deps.vdb, req.params.token);
      return { revoked: t.id };
    },
  });
}
