// The portal end to end, in real headless Chromium against a real vault process with a real machine
// (its workload and agent) at the primary site: sign in, create a policy and protect the machine on
// the set-up page, then from the item page a drill and its cleanup, a failover with the source shut
// down, commit, reprotect, failback and commit, each started from its dialog and followed on its job
// page. The jobs are checked through the API too, and the data at the end: every record the workload
// acknowledged before the failback is on the primary's disks. Screenshots of the main screens go to
// docs/screenshots/ (linked from the README).
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { Locator, Page } from "playwright-core";
import { buildPortal, portalIsCurrent } from "../../scripts/portal-build.ts";
import { type Browser, browserSkip, launchBrowser } from "../helpers/browser.ts";
import { ROOT, tempDir } from "../helpers/env.ts";
import {
  acks,
  apiOf,
  defineMachine,
  type Json,
  killMachines,
  prefixOf,
  startVaultProcess,
  succeededJob,
  until,
  type VaultProcess,
} from "../helpers/vault.ts";

const SHOTS = path.join(ROOT, "docs/screenshots");
const AXE = path.join(ROOT, "node_modules/axe-core/axe.min.js");

interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: { target: string[] }[];
}

describe("the portal runs the whole DR cycle in Chromium", { timeout: 900_000, skip: browserSkip() }, () => {
  let tmp: { dir: string; cleanup: () => void };
  let vault: VaultProcess;
  let api: ReturnType<typeof apiOf>;
  let browser: Browser;
  let page: Page;
  const data = () => path.join(tmp.dir, "data");
  const ack = () => path.join(tmp.dir, "acks.log");

  /** serious and critical WCAG 2 A/AA violations axe-core finds, per screen */
  const inaccessible: string[] = [];

  async function shot(name: string, full = false): Promise<void> {
    await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: full, animations: "disabled" });
    if ((await page.evaluate(() => "axe" in window)) === false) await page.addScriptTag({ path: AXE });
    const violations = await page.evaluate(async () => {
      const axe = (
        window as unknown as { axe: { run: (c: unknown, o: unknown) => Promise<{ violations: unknown[] }> } }
      ).axe;
      return (await axe.run(document, { runOnly: ["wcag2a", "wcag2aa"] })).violations;
    });
    for (const v of violations as AxeViolation[]) {
      if (v.impact !== "serious" && v.impact !== "critical") continue;
      inaccessible.push(
        `${name}: ${v.id} (${v.help}) at ${v.nodes
          .slice(0, 3)
          .map((n) => n.target.join(" "))
          .join(", ")}`,
      );
    }
  }

  const item = async (): Promise<Json> => (await api("GET", "/v1/items/web1")).body;

  /** Opens the item page and waits until it shows `phase` in words. */
  async function itemPageAt(words: RegExp, ms = 120_000): Promise<void> {
    await page.goto(`${vault.url}/#/items/web1`);
    await page.locator(".page-head .sub").filter({ hasText: words }).waitFor({ timeout: ms });
  }

  /**
   * Starts an operation from the item page: its button, its dialog (filled by `fill`), its start
   * button; then follows the job page until the job succeeded. Returns the job.
   */
  async function operate(
    button: string,
    title: string,
    start: string,
    fill?: (d: Locator) => Promise<void>,
    screenshot?: string,
  ): Promise<Json> {
    await page.locator("fieldset.actions").getByRole("button", { name: button, exact: true }).click();
    const d = page.getByRole("dialog", { name: title });
    await d.waitFor();
    if (fill !== undefined) await fill(d);
    const go = d.getByRole("button", { name: start, exact: true });
    // enabled once the vault's dry run said yes to exactly these choices
    await until(`${title}: the vault's dry run allows it`, () => go.isEnabled(), 30_000);
    if (screenshot !== undefined) await shot(screenshot);
    await go.click();
    await page.waitForURL(/#\/jobs\/job-/, { timeout: 30_000 });
    const id = /#\/jobs\/(job-[a-z0-9]+)/.exec(page.url())?.[1] as string;
    const job = await succeededJob(api, id, { ms: 240_000, context: () => vault.stderr().slice(-3000) });
    // the job page follows it live to the end
    await page
      .locator(".page-head")
      .getByText("Succeeded", { exact: true })
      .first()
      .waitFor({ timeout: 30_000 });
    return job;
  }

  const typeName = async (d: Locator) => d.getByLabel("Type web1 to confirm").fill("web1");

  before(async () => {
    tmp = tempDir("sb-portal-e2e-");
    mkdirSync(SHOTS, { recursive: true });
    if (!portalIsCurrent()) await buildPortal();
    vault = await startVaultProcess(data());
    api = apiOf(vault);
    // the machine itself is defined through the API: the portal protects machines, it does not make them
    await defineMachine(api, { name: "web1", ackLog: ack() });
    const started = await api("POST", "/v1/machines/web1/start", {});
    assert.equal(started.status, 200, JSON.stringify(started.body));
    browser = await launchBrowser({ viewport: { width: 1400, height: 900 }, bypassCSP: true });
    page = await browser.newPage();
  });

  after(async () => {
    await browser?.close();
    await vault?.stop();
    if (tmp !== undefined) killMachines(data());
    if (process.env.KEEP_TMP === undefined) tmp?.cleanup();
  });

  it("signs in, protects, drills, fails over, commits, reprotects, fails back and commits", async (t) => {
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));

    // sign in: a wrong token is refused with the vault's reason, the admin token goes through
    await page.goto(`${vault.url}/`);
    await page.getByLabel("Vault token").fill("not-a-token");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("alert").filter({ hasText: "UNAUTHENTICATED" }).waitFor();
    await page.getByLabel("Vault token").fill(vault.token);
    await shot("sign-in");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { name: "Replicated items" }).waitFor();
    await page.getByRole("heading", { name: "No machine is protected yet" }).waitFor();

    // set-up: a policy (its rules checked before sending), then protect the machine once its agent is up
    await page.getByRole("link", { name: "Set up protection" }).click();
    await page.getByRole("heading", { name: "Set up protection" }).waitFor();
    const policy = page.getByRole("form", { name: "New policy" });
    await policy.getByLabel("Name", { exact: true }).fill("fast");
    await policy.getByLabel("RPO threshold").fill("1m");
    await policy.getByLabel("Keep points for").fill("1h");
    await policy.getByLabel("Crash-consistent point every").fill("2h");
    await policy.getByRole("button", { name: "Create policy" }).click();
    await policy.getByText("points this far apart would breach the RPO threshold").waitFor();
    await policy.getByLabel("Crash-consistent point every").fill("1s");
    await policy.getByLabel("App-consistent point every").fill("0");
    await policy.getByRole("button", { name: "Create policy" }).click();
    await page.getByText(/Existing: .*fast/).waitFor();
    const protect = page.getByRole("form", { name: "Protect a machine" });
    await until(
      "the machine's agent shows as online",
      async () =>
        (await protect.getByLabel("Machine").locator("option").allTextContents()).some((o) =>
          /web1 .*online/.test(o),
        ),
      60_000,
    );
    await protect.getByLabel("Machine").selectOption("web1");
    await protect.getByLabel("Recovery site").selectOption("primary");
    await protect.getByText("the recovery site must differ from the site the machine runs at").waitFor();
    await protect.getByLabel("Recovery site").selectOption("recovery");
    await protect.getByLabel("Policy").selectOption("fast");
    await shot("set-up", true);
    await protect.getByRole("button", { name: "Enable replication" }).click();
    await page.waitForURL(/#\/items\/web1/);
    await itemPageAt(/^Protected · primary → recovery/);
    await page.waitForTimeout(2500); // a few points on the timeline and the RPO chart
    await shot("item", true);
    await page.goto(`${vault.url}/#/items`);
    await page.getByRole("table", { name: "Replicated items" }).getByRole("link", { name: "web1" }).waitFor();
    await shot("items");

    // drill on the latest processed point, then cleanup with notes
    await itemPageAt(/^Protected/);
    const drill = await operate(
      "Test failover",
      "Test failover",
      "Start test failover",
      undefined,
      "dialog-test-failover",
    );
    assert.equal(drill.kind, "test-failover");
    await shot("job", true);
    assert.ok((await item()).drill !== null, "the drill is recorded");
    await itemPageAt(/^Protected/);
    await page.getByText("A test failover copy runs at").waitFor();
    await operate("Clean up test failover", "Clean up test failover", "Clean up", async (d) =>
      d.getByLabel("Notes").fill("drill from the portal: the service answered"),
    );
    assert.equal((await item()).drill, null);

    // failover to the latest point with the source shut down first
    await itemPageAt(/^Protected/);
    const fo = await operate(
      "Failover",
      "Failover",
      "Fail over",
      async (d) => {
        await d.getByText("primary → recovery").first().waitFor();
        await d
          .getByText(/cannot be cancelled/)
          .first()
          .waitFor();
        await d.getByRole("radio", { name: /^Latest\b(?! processed| app)/ }).check();
        await d.getByRole("checkbox", { name: /Shut down the machine before beginning failover/ }).check();
        await typeName(d);
      },
      "dialog-failover",
    );
    assert.equal(fo.params.shutdownSource, true);
    const failedOver = await item();
    assert.equal(failedOver.phase, "failed-over");
    assert.match(failedOver.failover.sourceShutdown.outcome, /shut down/);

    await itemPageAt(/^Failed over, not committed/);
    await operate("Commit", "Commit failover", "Commit", typeName);
    assert.equal((await item()).phase, "failover-committed");

    // reprotect to the original location: replicates recovery → primary
    await itemPageAt(/^Failover committed/);
    await operate(
      "Reprotect",
      "Reprotect",
      "Reprotect",
      async (d) => {
        await d.getByRole("radio", { name: /Original location/ }).check();
        await d.getByText("recovery → primary").first().waitFor();
      },
      "dialog-reprotect",
    );
    await itemPageAt(/^Protected · recovery → primary/, 180_000);

    // failback with the recovery machine shut down first, then commit
    const ackedBeforeFailback = acks(ack()).length;
    const fb = await operate("Failback", "Failback", "Fail back", async (d) => {
      await d.getByRole("checkbox", { name: /Shut down the machine before beginning failback/ }).check();
      await typeName(d);
    });
    assert.equal(fb.kind, "failover");
    await itemPageAt(/^Failed over, not committed/);
    await operate("Commit", "Commit failback", "Commit", typeName);
    const home = await item();
    assert.equal(home.phase, "failover-committed");
    assert.equal(home.target, home.home, "the failback brought the machine home");
    const machine = (await api("GET", "/v1/machines/web1")).body;
    assert.equal(machine.site, "primary", "the machine runs at home again");

    // nothing acknowledged before the failback is missing from the primary's disks
    const homeInstance = machine.instanceId as string;
    const disk = path.join(data(), "sites", "primary", "machines", homeInstance, "disk-1.img");
    const acked = acks(ack()).slice(0, ackedBeforeFailback);
    assert.ok(acked.length > 0);
    assert.ok(
      prefixOf(disk) >= (acked.at(-1) as number),
      "every acknowledged record is on the primary's disks",
    );

    // the jobs page lists the whole cycle, linked to the item
    await page.goto(`${vault.url}/#/jobs`);
    await page.getByRole("link", { name: "web1" }).first().waitFor();
    await shot("jobs");

    // a recovery plan made in the portal reprotects the machine again (the cycle's last step)
    await page.goto(`${vault.url}/#/plans`);
    await page.getByRole("heading", { name: "Recovery plans" }).waitFor();
    await page.getByRole("button", { name: "New plan" }).first().click();
    const created = page.getByRole("dialog", { name: "New recovery plan" });
    await created.getByLabel("Name").fill("erp");
    await created.getByRole("button", { name: "Create and add groups" }).click();
    await page.getByRole("tab", { name: /^Edit/ }).waitFor();
    if ((await page.getByRole("button", { name: "Add machines to group 1" }).count()) === 0) {
      await page.getByRole("button", { name: "+ Add a group" }).click();
    }
    await page.getByRole("button", { name: "Add machines to group 1" }).click();
    const picker = page.getByRole("dialog", { name: "Add machines to group 1" });
    await picker.getByRole("checkbox", { name: /web1/ }).check();
    await picker.getByRole("button", { name: "Add 1 machine" }).click();
    await page.getByRole("button", { name: "Save the plan" }).click();
    await page.getByText("Saved.").waitFor();
    const plan = (await api("GET", "/v1/plans/erp")).body;
    assert.deepEqual(
      plan.groups.map((g: Json) => g.items.map((i: Json) => i.name)),
      [["web1"]],
      "the plan the portal saved",
    );
    await page.locator("fieldset.actions").getByRole("button", { name: "Reprotect", exact: true }).click();
    const run = page.getByRole("dialog", { name: "Reprotect: plan erp" });
    await run.getByRole("button", { name: "Reprotect 1 machine" }).click();
    await until(
      "the plan's reprotect job",
      async () =>
        ((await api("GET", `/v1/jobs?plan=${plan.id}`)).body as Json[])[0]?.id as string | undefined,
      30_000,
    ).then((id) => succeededJob(api, id, { ms: 240_000, context: () => vault.stderr().slice(-3000) }));
    await page.getByText("1 of 1 machines succeeded.").waitFor();
    await shot("plan", true);
    assert.equal((await item()).direction, "primary → recovery", "reprotected again after the failback");
    await page.goto(`${vault.url}/#/plans`);
    await page.getByRole("table", { name: "Recovery plans" }).waitFor();
    await shot("plans");
    await page.goto(`${vault.url}/#/alerts?all=1`);
    await page.getByRole("heading", { name: "Alerts" }).waitFor();
    await page.locator("table[aria-label=Alerts], .empty").first().waitFor();
    await shot("alerts");

    // an operator of their own: a viewer token made on the access page reads everything, offers nothing
    await page.goto(`${vault.url}/#/access`);
    const made = page.getByRole("form", { name: "New operator token" });
    await made.getByLabel("Name").fill("noc-screen");
    await made.getByLabel("Role").selectOption("viewer");
    await made.getByRole("button", { name: "Make token" }).click();
    const secret = (await page.locator(".secret pre").textContent())?.trim() ?? "";
    assert.match(secret, /^\S{20,}$/);
    await page
      .getByRole("table", { name: "Operator tokens" })
      .getByRole("cell", { name: "noc-screen", exact: true })
      .waitFor();
    await shot("access");
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByLabel("Vault token").fill(secret);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { name: "Only admins manage tokens" }).waitFor();
    await page.goto(`${vault.url}/#/items/web1`);
    await page.locator("fieldset.actions").getByText("Read only").waitFor();
    assert.equal(
      await page.locator("fieldset.actions button").count(),
      0,
      "no operation is offered to a viewer",
    );
    const viewerApi = apiOf({ url: vault.url, token: secret });
    assert.equal((await viewerApi("POST", "/v1/items/web1/test-failover", {})).status, 403);
    assert.deepEqual(errors, [], "no script error in the page");
    assert.deepEqual(inaccessible, [], "axe-core finds no serious or critical WCAG 2 A/AA violation");
    t.diagnostic(`cycle done; ${acks(ack()).length} records acknowledged by the workload`);
  });
});
