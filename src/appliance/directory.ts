// The replication directory as a process server uses it: which agent token belongs to which machine,
// and for each machine which items it may replicate to this site with which generation. The vault
// keeps the whole directory (src/vault/replication.ts); a remote appliance holds its site's part,
// fetched from the vault every second and pushed by the vault on every change. Both authenticate
// with `authenticateFrom`, so an in-process and a remote process server accept and fence alike:
// a request goes through only with the item's current generation, an older one is named fenced.
import { createHash } from "node:crypto";
import { type Static, Type } from "@sinclair/typebox";
import type { FastifyRequest } from "fastify";
import type { Authenticate, Principal } from "./process-server.ts";

/**
 * How long a remote appliance trusts its directory without hearing from the vault; after that it
 * fences every item (fail closed). A failover whose change could not be pushed waits this long
 * before going on. Long enough that a vault restart does not pause replication, short enough that a
 * failover cut off from its target's appliance loses a minute, not its fencing.
 */
export const DIRECTORY_LEASE_MS = 60_000;

export interface ItemGrant {
  generation: number;
  /** the site of the process server that may receive it (the item's target) */
  targetSite: string;
  /** the site the machine replicates from (the item's source): only the copy there may write */
  sourceSite: string;
  replicating: boolean;
}

/** Whom an agent token speaks for: a machine, and the copy of it that registered (its site). */
export interface AgentOf {
  machineId: string;
  /** null: a token from before copies were told apart, or an agent registered without a site */
  site: string | null;
}

export interface ReplicationDirectory {
  /** sha256(token) → the machine and copy it speaks for */
  tokens: Map<string, AgentOf>;
  /** machine id → item id → grant */
  grants: Map<string, Map<string, ItemGrant>>;
}

export function emptyDirectory(): ReplicationDirectory {
  return { tokens: new Map(), grants: new Map() };
}

/** One site's part of the directory, as the vault serves it to that site's appliance. */
export const SiteDirectorySchema = Type.Object(
  {
    /** when the vault read it (before reading): a newer copy always wins over an older one */
    asOf: Type.String(),
    site: Type.String({ description: "the site's id" }),
    agents: Type.Array(
      Type.Object({
        tokenSha256: Type.String({ pattern: "^[0-9a-f]{64}$" }),
        machineId: Type.String(),
        site: Type.Optional(Type.Union([Type.String(), Type.Null()])),
      }),
    ),
    grants: Type.Array(
      Type.Object({
        machineId: Type.String(),
        item: Type.String(),
        generation: Type.Integer({ minimum: 0 }),
        replicating: Type.Boolean(),
        sourceSite: Type.Optional(Type.String()),
      }),
    ),
  },
  { additionalProperties: false },
);
export type SiteDirectory = Static<typeof SiteDirectorySchema>;

/** The site's part: grants towards the site, and the tokens of the machines that hold them. */
export function siteDirectory(dir: ReplicationDirectory, siteId: string, asOf: Date): SiteDirectory {
  const grants: SiteDirectory["grants"] = [];
  const machines = new Set<string>();
  for (const [machineId, items] of dir.grants) {
    for (const [item, g] of items) {
      if (g.targetSite !== siteId) continue;
      grants.push({
        machineId,
        item,
        generation: g.generation,
        replicating: g.replicating,
        sourceSite: g.sourceSite,
      });
      machines.add(machineId);
    }
  }
  const agents = [...dir.tokens]
    .filter(([, a]) => machines.has(a.machineId))
    .map(([tokenSha256, a]) => ({ tokenSha256, machineId: a.machineId, site: a.site }));
  return { asOf: asOf.toISOString(), site: siteId, agents, grants };
}

export function fromSiteDirectory(d: SiteDirectory): ReplicationDirectory {
  const dir = emptyDirectory();
  for (const a of d.agents) dir.tokens.set(a.tokenSha256, { machineId: a.machineId, site: a.site ?? null });
  for (const g of d.grants) {
    const m = dir.grants.get(g.machineId) ?? new Map<string, ItemGrant>();
    m.set(g.item, {
      generation: g.generation,
      targetSite: d.site,
      sourceSite: g.sourceSite ?? "",
      replicating: g.replicating,
    });
    dir.grants.set(g.machineId, m);
  }
  return dir;
}

/**
 * A process server's authentication at `siteId`: agent tokens of the directory, current generations
 * only (synchronous: it reads the directory in memory).
 */
export function authenticateFrom(dir: () => ReplicationDirectory, siteId: () => string): Authenticate {
  return (req: FastifyRequest): Principal | null => {
    const h = req.headers.authorization;
    if (h === undefined || !h.startsWith("Bearer ")) return null;
    const digest = createHash("sha256").update(h.slice(7).trim(), "utf8").digest("hex");
    const d = dir();
    const agent = d.tokens.get(digest);
    if (agent === undefined) return null;
    const machine = agent.machineId;
    const header = req.headers["switchback-generation"];
    const generation = Number(Array.isArray(header) ? header[0] : header);
    const items = new Set<string>();
    const fenced = new Set<string>();
    for (const [item, g] of d.grants.get(machine) ?? []) {
      if (g.targetSite !== siteId()) continue;
      // the copy must be the one at the item's source (an old copy elsewhere never writes, even
      // with the current generation) and speak the current generation
      const rightCopy = agent.site === null || g.sourceSite === "" || agent.site === g.sourceSite;
      if (g.replicating && g.generation === generation && rightCopy) items.add(item);
      else fenced.add(item);
    }
    return { agent: `machine ${machine}`, items, fenced };
  };
}
