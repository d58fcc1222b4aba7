// What the operation dialogs check and say before anything starts. Pure: an item, its points, the
// appliances and datastores, and what the operator chose in; errors by field, request bodies and
// sentences out. The vault still decides (every dialog shows its dry run); these catch the mistakes
// it cannot see in a request: a custom point never chosen, the name not typed, a process server at the
// wrong site, notes too long to keep. Importable by node's tests: types only from the API client.
import type { Appliance, Datastore, Decision, ItemView, Operation, PointView } from "../api/client.ts";
import { duration } from "./format.ts";
import type { Errors } from "./validate.ts";
import { OPERATION_WORDS } from "./words.ts";

export const NOTES_MAX = 4000;

// ---- recovery points ---------------------------------------------------------------------------

export type PointChoice = "latest" | "latest-processed" | "latest-app-consistent" | "custom";

export interface PointForm {
  choice: PointChoice;
  /** the point id picked from the list when choice is custom ("" until one is picked) */
  custom: string;
}

export type PointOp = "test-failover" | "failover" | "change-point";

/** The options each operation offers, in the order shown (its default first). */
export const POINT_CHOICES: Record<PointOp, readonly PointChoice[]> = {
  // a drill costs nothing to repeat: the fastest point first
  "test-failover": ["latest-processed", "latest", "latest-app-consistent", "custom"],
  // a failover loses the least data with latest, which the vault uses when none is named
  failover: ["latest", "latest-processed", "latest-app-consistent", "custom"],
  // after a failover replication has stopped: nothing is left to process, so no "latest"
  "change-point": ["latest-processed", "latest-app-consistent", "custom"],
};

/** Each option's name and its one-line trade-off between data lost (RPO) and time to run (RTO). */
export const POINT_WORDS: Record<PointChoice, { label: string; tradeOff: string }> = {
  latest: {
    label: "Latest",
    tradeOff:
      "Processes the data still on its way into a new point first: the least data lost (lowest RPO), but it starts later (higher RTO).",
  },
  "latest-processed": {
    label: "Latest processed",
    tradeOff:
      "The newest point already processed: starts at once (lowest RTO), losing what was written after it.",
  },
  "latest-app-consistent": {
    label: "Latest app-consistent",
    tradeOff:
      "The newest point taken with applications quiesced: they start clean, but it is older, so more data is lost.",
  },
  custom: {
    label: "A specific point",
    tradeOff: "Pick one from the list, e.g. a point from before corruption or an attack.",
  },
};

/** The initial choice: the point handed in (picked on the timeline), else the operation's default. */
export function initialPointForm(op: PointOp, point?: string): PointForm {
  if (point !== undefined && point !== "") {
    if ((POINT_CHOICES[op] as readonly string[]).includes(point)) {
      return { choice: point as PointChoice, custom: "" };
    }
    return { choice: "custom", custom: point };
  }
  // changing the point means moving away from the one running: the operator names the new one
  return { choice: op === "change-point" ? "custom" : (POINT_CHOICES[op][0] as PointChoice), custom: "" };
}

/** What the API takes as `point`. */
export function pointText(f: PointForm): string {
  return f.choice === "custom" ? f.custom : f.choice;
}

/** Newest first, as the API lists them; sorted again so a caller's order does not matter. */
function newestFirst(points: readonly PointView[]): PointView[] {
  return [...points].sort((a, b) => Date.parse(b.createdAt) - Date.parse(a.createdAt));
}

/** The held point a choice means, when it is one already held (`latest` makes a new one: null). */
export function resolvePoint(f: PointForm, points: readonly PointView[]): PointView | null {
  const sorted = newestFirst(points);
  switch (f.choice) {
    case "latest":
      return null;
    case "latest-processed":
      return sorted[0] ?? null;
    case "latest-app-consistent":
      return sorted.find((p) => p.consistency === "app") ?? null;
    case "custom":
      return sorted.find((p) => p.id === f.custom) ?? null;
  }
}

/** How old the point an option means is, in words ("4 min old"); `points` undefined while loading. */
export function pointAgeWords(
  choice: PointChoice,
  points: readonly PointView[] | undefined,
  custom = "",
): string {
  if (points === undefined) return "…";
  const newest = newestFirst(points)[0];
  if (choice === "latest") {
    return newest === undefined
      ? "a new point, cut when it starts"
      : `a new point, cut when it starts (the newest held is ${duration(newest.ageSeconds)} old)`;
  }
  const p = resolvePoint({ choice, custom }, points);
  if (p === null) {
    if (choice === "custom") return custom === "" ? "none chosen yet" : "no longer held";
    if (choice === "latest-app-consistent") return "none held";
    return "no point yet";
  }
  return `${duration(p.ageSeconds)} old${p.consistency === "app" ? ", app-consistent" : ""}`;
}

/** The point's own line in the custom list: time, age and consistency. */
export function pointOptionText(p: PointView, timeText: (iso: string) => string): string {
  return `${timeText(p.createdAt)} · ${duration(p.ageSeconds)} old · ${p.consistency === "app" ? "app-consistent" : "crash-consistent"}`;
}

export function validatePoint(f: PointForm, points: readonly PointView[] | undefined): Errors<"point"> {
  if (f.choice === "custom" && f.custom === "") return { point: "choose a recovery point from the list" };
  if (points === undefined || f.choice === "latest") return {};
  if (points.length === 0) {
    return {
      point:
        "the item holds no recovery point yet: wait for initial replication to finish (Latest can still cut one)",
    };
  }
  if (f.choice === "latest-app-consistent" && resolvePoint(f, points) === null) {
    return {
      point:
        "the item holds no app-consistent point: choose another option, or check the machine's pre-snapshot hooks",
    };
  }
  if (f.choice === "custom" && resolvePoint(f, points) === null) {
    return { point: "that point is no longer held (retention pruned it?): choose another" };
  }
  return {};
}

// ---- typing the name ---------------------------------------------------------------------------

/** Failover, commit and disable cannot be undone (or cancelled once begun): their dialogs want the name. */
export function validateConfirm(typed: string, item: Pick<ItemView, "name">): Errors<"confirm"> {
  if (typed.trim() === item.name) return {};
  return {
    confirm:
      typed.trim() === "" ? `type ${item.name} to confirm` : `that is not the item's name: type ${item.name}`,
  };
}

// ---- each operation ----------------------------------------------------------------------------

export function isFailback(item: Pick<ItemView, "target" | "home">): boolean {
  return item.target === item.home;
}

/** The dialog's title and the start button's words. */
export function operationTitle(item: Pick<ItemView, "target" | "home">, op: Operation): string {
  if (op === "failover" && isFailback(item)) return "Failback";
  if (op === "commit") return isFailback(item) ? "Commit failback" : "Commit failover";
  return OPERATION_WORDS[op];
}

export function startWords(item: Pick<ItemView, "target" | "home">, op: Operation): string {
  switch (op) {
    case "test-failover":
      return "Start test failover";
    case "test-failover-cleanup":
      return "Clean up";
    case "failover":
      return isFailback(item) ? "Fail back" : "Fail over";
    case "change-point":
      return "Change point";
    case "commit":
      return "Commit";
    case "reprotect":
      return "Reprotect";
    case "disable":
      return "Disable replication";
  }
}

export interface TestFailoverForm {
  point: PointForm;
  /** the isolated network for this drill; "" keeps the item's own test network */
  testNetwork?: string;
}

export function validateTestFailover(
  f: TestFailoverForm,
  item: Pick<ItemView, "targetSettings">,
  points: readonly PointView[] | undefined,
): Errors<"point" | "testNetwork"> {
  const e: Errors<"point" | "testNetwork"> = { ...validatePoint(f.point, points) };
  const s = item.targetSettings;
  const chosen = (f.testNetwork ?? "").trim();
  const net = chosen !== "" ? chosen : s.testNetwork;
  if (chosen.length > 64) e.testNetwork = "a network name has at most 64 characters";
  else if (net !== undefined && s.network !== undefined && net === s.network) {
    e.testNetwork = `the test network is the production network (${s.network}): the drill copy would clash with the running machine; choose an isolated network`;
  }
  return e;
}

export interface CleanupForm {
  notes: string;
}

export function validateCleanup(f: CleanupForm): Errors<"notes"> {
  if (f.notes.length <= NOTES_MAX) return {};
  return {
    notes: `notes are ${f.notes.length} characters, ${f.notes.length - NOTES_MAX} over the ${NOTES_MAX} kept: shorten them`,
  };
}

export interface FailoverForm {
  point: PointForm;
  shutdownSource: boolean;
  /** planned: the running machine takes a final point and shuts down first (forces latest and shutdown) */
  planned: boolean;
  confirm: string;
}

export function validateFailover(
  f: FailoverForm,
  item: Pick<ItemView, "name">,
  points: readonly PointView[] | undefined,
): Errors<"point" | "confirm"> {
  // a planned failover takes no point choice: it always drains a new one
  return { ...(f.planned ? {} : validatePoint(f.point, points)), ...validateConfirm(f.confirm, item) };
}

/**
 * The failover's default point once the source machine's agent is known: latest needs the machine
 * running to drain it (else the vault refuses FAILOVER_LATEST_SOURCE_NOT_RUNNING), so an agent not
 * online means latest processed. `undefined`: not known (yet), keep latest.
 */
export function failoverDefaultChoice(liveness: string | undefined): PointChoice {
  return liveness === undefined || liveness === "online" ? "latest" : "latest-processed";
}

/** The one line that explains the planned option. */
export const PLANNED_WORDS = (source: string, word: string) =>
  `No data loss: the machine at ${source} takes a final point and shuts down before the ${word}; it must be running. Uses Latest and shuts the machine down.`;

/**
 * The body that resumes a failover stopped half-way (phase failing-over): the request of the job that
 * began it, so the point it chose is chosen again (a drained point is reused by the vault). Null
 * params (no earlier job found): the vault's defaults.
 */
export function resumeBody(params: unknown): Record<string, unknown> {
  const p = (params ?? {}) as { point?: unknown; shutdownSource?: unknown };
  const out: Record<string, unknown> = {};
  if (typeof p.point === "string" && p.point !== "") out.point = p.point;
  if (typeof p.shutdownSource === "boolean") out.shutdownSource = p.shutdownSource;
  return out;
}

export interface ChangePointForm {
  point: PointForm;
}

export function validateChangePoint(
  f: ChangePointForm,
  item: Pick<ItemView, "failover">,
  points: readonly PointView[] | undefined,
): Errors<"point"> {
  const e = validatePoint(f.point, points);
  if (e.point !== undefined || points === undefined || item.failover === null) return e;
  const p = resolvePoint(f.point, points);
  if (p !== null && p.id === item.failover.point) {
    return { point: "the machine runs from this point already: choose another" };
  }
  return {};
}

export interface ConfirmForm {
  confirm: string;
}

/** Commit and disable: the form is only the name typed. */
export const validateConfirmForm = (f: ConfirmForm, item: Pick<ItemView, "name">): Errors<"confirm"> =>
  validateConfirm(f.confirm, item);

/**
 * What disable says before the vault's list, by phase: after a committed failover nothing
 * replicates and the machine runs at the target, so "replication ends" and "keeps running at the
 * source" would be wrong.
 */
export function disableWords(item: Pick<ItemView, "name" | "phase" | "source" | "target" | "direction">): {
  lead: string;
  warning: string;
} {
  if (item.phase === "failover-committed") {
    return {
      lead: `${item.name} runs at ${item.target} since its failover was committed, and nothing replicates it now. Disabling removes the item: the machine keeps running at ${item.target}, unprotected.`,
      warning: `Without the item it cannot be reprotected or failed back to ${item.source}: protecting it again starts from scratch.`,
    };
  }
  return {
    lead: `Stops protecting ${item.name}: replication ${item.direction} ends and the item is removed. The machine at ${item.source} keeps running; you can protect it again later, from scratch.`,
    warning: `Every recovery point of ${item.name} at ${item.target} is deleted. Nothing can be recovered from them afterwards.`,
  };
}

// ---- reprotect ---------------------------------------------------------------------------------

export type Location = "original" | "alternate";

export interface ReprotectForm {
  location: Location;
  /** appliance and datastore ids ("" until the lists arrive: the vault then picks the site's own) */
  processServer: string;
  masterTarget: string;
  datastore: string;
}

export const LOCATION_WORDS: Record<Location, { label: string; explain: (returnSite: string) => string }> = {
  original: {
    label: "Original location",
    explain: (s) =>
      `Onto the disks the machine left at ${s}: only the blocks that differ are shipped. Needs those disks to still be there.`,
  },
  alternate: {
    label: "Alternate location",
    explain: (s) =>
      `Into new disks in the datastore chosen below at ${s}: a full copy over the link. For when the original disks are gone or must be kept as they are.`,
  },
};

/**
 * The reprotect form as the dialog opens: the original location when the machine's disks are still
 * at the return site, else alternate (the vault refuses original with REPROTECT_ORIGINAL_DISKS_GONE).
 * Appliances and datastore "": the site's defaults.
 */
export function initialReprotectForm(item: { disksAtReturnSite?: boolean }): ReprotectForm {
  return {
    location: item.disksAtReturnSite === false ? "alternate" : "original",
    processServer: "",
    masterTarget: "",
    datastore: "",
  };
}

/** Where the machine runs now and where replication goes back to (site names). */
export function reprotectSites(item: Pick<ItemView, "phase" | "source" | "target">): {
  running: string;
  returning: string;
} {
  // resuming a reprotect: source and target are already swapped
  return item.phase === "reprotecting"
    ? { running: item.source, returning: item.target }
    : { running: item.target, returning: item.source };
}

/** The direction reprotect will replicate in, before the vault's dry run says it. */
export function reprotectDirection(item: Pick<ItemView, "phase" | "source" | "target">): string {
  const s = reprotectSites(item);
  return `${s.running} → ${s.returning}`;
}

const atSite = (site: string) => (x: { site: string; siteId: string }) =>
  x.site === site || x.siteId === site;
const byCreated = (a: { createdAt: string; name: string }, b: { createdAt: string; name: string }) =>
  Date.parse(a.createdAt) - Date.parse(b.createdAt) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/**
 * The choices at the site replication returns to, the vault's default first (the site's first
 * appliance with the role, its first datastore: what it uses when none is named).
 */
export function reprotectChoices(
  item: Pick<ItemView, "phase" | "source" | "target">,
  appliances: readonly Appliance[],
  datastores: readonly Datastore[],
): { processServers: Appliance[]; masterTargets: Appliance[]; datastores: Datastore[] } {
  const site = reprotectSites(item).returning;
  const here = appliances.filter(atSite(site)).sort(byCreated);
  return {
    processServers: here.filter((a) => a.roles.includes("process-server")),
    masterTargets: here.filter((a) => a.roles.includes("master-target")),
    datastores: datastores.filter(atSite(site)).sort(byCreated),
  };
}

/** The form with each empty choice set to the site's default, once the lists are known. */
export function withReprotectDefaults(
  f: ReprotectForm,
  choices: ReturnType<typeof reprotectChoices>,
): ReprotectForm {
  return {
    ...f,
    processServer: f.processServer || (choices.processServers[0]?.id ?? ""),
    masterTarget: f.masterTarget || (choices.masterTargets[0]?.id ?? ""),
    datastore: f.datastore || (choices.datastores[0]?.id ?? ""),
  };
}

export function validateReprotect(
  f: ReprotectForm,
  item: Pick<ItemView, "phase" | "source" | "target">,
  appliances: readonly Appliance[] | undefined,
  datastores: readonly Datastore[] | undefined,
): Errors<"processServer" | "masterTarget" | "datastore"> {
  const e: Errors<"processServer" | "masterTarget" | "datastore"> = {};
  if (appliances === undefined || datastores === undefined) return e;
  const site = reprotectSites(item).returning;
  const c = reprotectChoices(item, appliances, datastores);
  const check = (
    k: "processServer" | "masterTarget" | "datastore",
    list: readonly { id: string; name: string; site: string }[],
    all: readonly { id: string; name: string; site: string }[],
    what: string,
    add: string,
  ) => {
    if (list.length === 0) {
      e[k] = `${site} has no ${what}: ${add}`;
      return;
    }
    if (f[k] === "" || list.some((x) => x.id === f[k])) return;
    const other = all.find((x) => x.id === f[k]);
    e[k] =
      other === undefined
        ? `that ${what} is gone: choose another`
        : `${other.name} is at ${other.site}, but replication goes back to ${site}: choose one at ${site}`;
  };
  check("processServer", c.processServers, appliances, "process server", "add an appliance with that role");
  check("masterTarget", c.masterTargets, appliances, "master target", "add an appliance with that role");
  check("datastore", c.datastores, datastores, "datastore", "create one at that site");
  return e;
}

// ---- request bodies ----------------------------------------------------------------------------

export const testFailoverBody = (f: TestFailoverForm): Record<string, string> => {
  const net = (f.testNetwork ?? "").trim();
  return net === "" ? { point: pointText(f.point) } : { point: pointText(f.point), testNetwork: net };
};
export const cleanupBody = (f: CleanupForm) => ({ notes: f.notes });
export const failoverBody = (f: FailoverForm): Record<string, unknown> =>
  f.planned
    ? { point: "latest", shutdownSource: true, planned: true }
    : { point: pointText(f.point), shutdownSource: f.shutdownSource };
export const changePointBody = (f: ChangePointForm) => ({ point: pointText(f.point) });
export function reprotectBody(f: ReprotectForm): Record<string, string> {
  const out: Record<string, string> = { location: f.location };
  if (f.processServer !== "") out.processServer = f.processServer;
  if (f.masterTarget !== "") out.masterTarget = f.masterTarget;
  if (f.datastore !== "") out.datastore = f.datastore;
  return out;
}

// ---- the dry run's answer --------------------------------------------------------------------------

/**
 * A dry run's error is a refusal (the vault said no, with a code and why) when it is a 4xx with the
 * vault's own code, 401 and 403 aside (not signed in, not allowed: no answer about the operation).
 * A network error (status 0), a 5xx, or an answer without a code: the vault could not check.
 */
export function isRefusalError(e: { status: number; code: string }): boolean {
  return (
    e.status >= 400 && e.status < 500 && e.status !== 401 && e.status !== 403 && !e.code.startsWith("HTTP_")
  );
}

/** The point the vault resolved, as the dry run answers it (decision.point). */
export type ResolvedPoint = NonNullable<Decision["point"]>;

/**
 * The body Start sends: the dry run's body with a keyword point (latest processed, app-consistent,
 * a time) replaced by the point the vault resolved and showed, so the operation uses exactly that
 * one even if a newer point lands meanwhile. `latest` is never pinned: it cuts a new point.
 */
export function pinPoint(
  body: Record<string, unknown>,
  resolved: ResolvedPoint | undefined,
): Record<string, unknown> {
  if (resolved === undefined || typeof body.point !== "string" || body.point === "latest") return body;
  return { ...body, point: resolved.id };
}

/** What the decision says of the point, in one line; null when the operation takes none. */
export function pointPinWords(
  requested: unknown,
  d: { drain: boolean; point?: ResolvedPoint | undefined },
  timeText: (iso: string) => string,
): string | null {
  if (d.point !== undefined) {
    const p = d.point;
    const kind = p.consistency === "app" ? "app-consistent" : "crash-consistent";
    const pinned = typeof requested === "string" && requested !== p.id;
    return `Will use point ${p.id} from ${timeText(p.createdAt)}, ${duration(p.ageSeconds)} old (${kind})${pinned ? ": Start sends exactly this point, so one arriving meanwhile is not used." : "."}`;
  }
  if (d.drain) {
    return "Latest cuts a new point when it starts, so which point it uses cannot be named now.";
  }
  return null;
}

/**
 * Refusals that go away once a machine runs again: the dialog offers to start it (POST
 * /v1/machines/{machine}/start, where the machine is now) and checks again.
 */
export const NEEDS_RUNNING_MACHINE: ReadonlySet<string> = new Set([
  "REPROTECT_MACHINE_NOT_RUNNING",
  "COMMIT_RECOVERED_MACHINE_NOT_RUNNING",
  "FAILOVER_LATEST_SOURCE_NOT_RUNNING",
  "FAILOVER_PLANNED_SOURCE_NOT_RUNNING",
]);

// ---- refusals ----------------------------------------------------------------------------------

/**
 * What to do about a refusal in the portal's own terms (the vault's sentence names CLI flags). Only
 * the refusals a choice in the dialog can fix, or a step the operator takes elsewhere.
 */
export const REFUSAL_ADVICE: Record<string, string> = {
  REPROTECT_ORIGINAL_DISKS_GONE: "Choose Alternate location to copy the machine into new disks.",
  REPROTECT_OLD_MACHINE_RUNNING:
    "Shut the old copy down at the site it ran at, then check again: reprotect writes onto its disks.",
  REPROTECT_MACHINE_NOT_RUNNING: "Start the machine where it runs now, then check again.",
  REPROTECT_MACHINE_NOT_AT_SITE:
    "Check that the machine's agent runs and reaches the vault, then check again.",
  REPROTECT_APPLIANCE_WRONG_SITE: "Choose appliances at the site replication goes back to.",
  REPROTECT_APPLIANCE_UNREACHABLE: "Check the appliance and the link between the sites, then check again.",
  REPROTECT_DATASTORE_WRONG_SITE: "Choose a datastore at the site replication goes back to.",
  REPROTECT_DRILL_ARTEFACTS: "Clean up the test failovers at that site first.",
  REPROTECT_RETURN_SITE_UNREACHABLE: "Check the link between the sites, then check again.",
  FAILOVER_LATEST_SOURCE_NOT_RUNNING:
    "Choose Latest processed: the machine cannot send what it still holds while it is down.",
  FAILOVER_PLANNED_SOURCE_NOT_RUNNING:
    "Untick Planned and choose Latest processed, or start the machine: a planned failover drains the running machine.",
  FAILOVER_PLANNED_POINT: "A planned failover always uses Latest: untick Planned to choose another point.",
  FAILOVER_DRILL_ACTIVE: "Clean up the test failover first.",
  POINT_NO_APP_CONSISTENT: "Choose Latest processed or a specific point.",
  POINT_NOT_FOUND: "The point was pruned: choose another.",
  POINT_NONE_AVAILABLE: "Wait for the first recovery point, or choose Latest to cut one now.",
  COMMIT_RECOVERED_MACHINE_NOT_RUNNING:
    "Start the recovered machine (or change the point), then check again.",
  DRILL_ALREADY_ACTIVE: "Clean up the running test failover first.",
  DISABLE_DRILL_ACTIVE: "Clean up the test failover first.",
  DISABLE_FAILOVER_NOT_COMMITTED: "Commit the failover (or change the point) first.",
  DISABLE_LAST_COPY: "Fail over first, or disable once the machine reports again.",
  ITEM_BUSY: "Another job runs on this item: wait for it to end.",
};
