// The operation dialogs in real headless Chromium, against a real vault: the harness page
// (test/portal/harness.tsx, bundled by esbuild like the portal) is served by an in-process vault whose
// items are seeded in the phases the dialogs need (protected, failed over, committed). Dry runs go to
// the vault, so its refusals are real (a seeded committed item's machine is not running: reprotect is
// refused). This is a component test, so where a state would take real machines and agents to reach
// (recovery points in a datastore, a running recovered machine, a drill), that one call is answered by
// the test with page.route, in the vault's own shapes; each such route says so.
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { Page, Route } from "playwright-core";
import { type SeededItem, seedItems } from "../../bench/lib/seed-items.ts";
import { buildPortal, ROOT } from "../../scripts/portal-build.ts";
import { type RunningVault, startVault } from "../../src/vault/server.ts";
import { type Browser, browserSkip, launchBrowser } from "../helpers/browser.ts";
import { tempDir } from "../helpers/env.ts";
import type { HarnessRecord } from "./harness.tsx";

const HARNESS = path.join(ROOT, "test/portal/harness.tsx");
/** PORTAL_SCREENSHOTS=DIR keeps screenshots of the dialogs there (to look at them). */
const SHOTS = process.env.PORTAL_SCREENSHOTS;

/** Three recovery points as GET /v1/items/{item}/points lists them: newest first. */
function fakePoints(nowMs: number) {
  const at = (agoS: number, hex: string, consistency: "crash" | "app") => {
    const t = new Date(nowMs - agoS * 1000).toISOString().replace(/[-:.]/g, "");
    return {
      id: `${t.slice(0, 15)}${t.slice(15, 18)}Z-${hex}`,
      createdAt: new Date(nowMs - agoS * 1000).toISOString(),
      consistency,
      ageSeconds: agoS,
    };
  };
  return [at(95, "a1a1a1", "crash"), at(400, "b2b2b2", "crash"), at(3700, "c3c3c3", "app")];
}

const decision = (op: string, consequences: string[], o: { irreversible?: boolean } = {}) => ({
  job: null,
  decision: {
    op,
    label: op,
    direction: "primary → recovery",
    drain: false,
    shutdownSource: false,
    irreversible: o.irreversible ?? false,
    consequences,
  },
});

/** A problem document as the vault answers it. */
const problem = (status: number, code: string, detail: string) => ({
  status,
  contentType: "application/problem+json",
  json: { type: `urn:switchback:problem:${code}`, title: code, status, code, detail },
});

/** What the harness page recorded (test/portal/harness.tsx). */
const harnessRecord = (page: Page) =>
  page.evaluate(() => (window as unknown as { harness: HarnessRecord }).harness);

const isDryRun = (op: string) => (url: URL) =>
  url.pathname.endsWith(`/${op}`) && url.searchParams.get("dryRun") === "true";

describe("operation dialogs in Chromium", { skip: browserSkip(), timeout: 180_000 }, () => {
  let tmp: { dir: string; cleanup: () => void };
  let vault: RunningVault;
  let browser: Browser;
  let seeded: SeededItem[];
  const pageErrors: string[] = [];
  // the points the tests answer with: fixed once, so the ids a test picks are the ones listed
  const POINTS = fakePoints(Date.now());

  const item = (phase: string, nth = 0): SeededItem => {
    const found = seeded.filter((s) => s.phase === phase)[nth];
    assert.ok(found, `the seed has a ${phase} item #${nth}`);
    return found;
  };

  async function api(method: string, url: string, body?: unknown) {
    const r = await fetch(vault.url + url, {
      method,
      headers: {
        authorization: `Bearer ${vault.adminToken}`,
        ...(body !== undefined ? { "content-type": "application/json" } : {}),
      },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    // biome-ignore lint/suspicious/noExplicitAny: checked field by field
    return { status: r.status, body: (await r.json()) as any };
  }

  /** The item as the vault shows it (site names, not ids). */
  const view = async (it: SeededItem): Promise<{ source: string; target: string; direction: string }> =>
    (await api("GET", `/v1/items/${it.name}`)).body;

  /** Opens the harness with one dialog; `routes` are set before the page loads. */
  async function open(
    op: string,
    it: SeededItem,
    o: { point?: string; patch?: object; routes?: (page: Page) => Promise<void> } = {},
  ): Promise<Page> {
    const page = await browser.newPage();
    page.on("pageerror", (err) => pageErrors.push(`${op}: ${err.message}`));
    await o.routes?.(page);
    const q = new URLSearchParams({ item: it.name, op });
    if (o.point !== undefined) q.set("point", o.point);
    if (o.patch !== undefined) q.set("patch", JSON.stringify(o.patch));
    await page.goto(`${vault.url}/?${q}`);
    await page.getByRole("dialog").waitFor();
    return page;
  }

  async function shot(page: Page, name: string): Promise<void> {
    if (SHOTS === undefined) return;
    await page.screenshot({ path: path.join(SHOTS, `dialog-${name}.png`), fullPage: true });
  }

  /** Every control in the dialog has a label (its accessible name comes from one). */
  async function assertLabelled(page: Page): Promise<void> {
    const unlabelled = await page.$$eval("dialog input, dialog select, dialog textarea", (els) =>
      els
        .filter((e) => (e as HTMLInputElement).labels?.length === 0 && !e.getAttribute("aria-label"))
        .map((e) => e.outerHTML.slice(0, 80)),
    );
    assert.deepEqual(unlabelled, [], "every control has a label");
  }

  const answerPoints = (it: SeededItem) => async (page: Page) => {
    // component test: the seeded items hold no points in the datastore; the list is answered here
    await page.route(
      (u) => u.pathname === `/v1/items/${it.id}/points`,
      (r: Route) => r.fulfill({ json: POINTS }),
    );
  };

  before(async () => {
    tmp = tempDir("sb-portal-dialogs-");
    const dist = path.join(tmp.dir, "dist");
    await buildPortal({ entry: HARNESS, dist, title: "Switchback dialog harness" });
    // a long heartbeat interval: the seeded machines' last reports stay recent for the whole test
    vault = await startVault({
      data: path.join(tmp.dir, "vault"),
      port: 0,
      log: false,
      portalDir: dist,
      heartbeatIntervalMs: 600_000,
    });
    // protected items, one failed over (not committed) and one committed, each batch in one phase
    const none = {
      initialReplication: 0,
      failedOver: 0,
      failoverCommitted: 0,
      enabling: 0,
      disabled: 0,
      rpoWarning: 0,
      rpoCritical: 0,
    };
    seeded = [
      ...(await seedItems(vault.vdb, 5, { prefix: "p-", mix: none })),
      ...(await seedItems(vault.vdb, 1, { prefix: "fo-", mix: { ...none, failedOver: 1 } })),
      ...(await seedItems(vault.vdb, 1, { prefix: "fc-", mix: { ...none, failoverCommitted: 1 } })),
    ];
    const patched = await api("PATCH", `/v1/items/${item("protected", 1).name}`, {
      network: "prod-net",
      testNetwork: "drill-net",
    });
    assert.equal(patched.status, 200, JSON.stringify(patched.body));
    browser = await launchBrowser();
    const token = vault.adminToken;
    await browser.context.addInitScript((t) => sessionStorage.setItem("switchback.token", t ?? ""), token);
  });

  after(async () => {
    await browser?.close();
    await vault?.close();
    tmp?.cleanup();
    assert.deepEqual(pageErrors, [], "no script error on any page");
  });

  it("failover keeps Start off until the item's name is typed, and says what it will do", async () => {
    const it = item("protected");
    const page = await open("failover", it, { routes: answerPoints(it) });
    const dialog = page.getByRole("dialog");
    const start = dialog.getByRole("button", { name: "Fail over" });
    // the vault's own dry run (latest: drains first), shown before anything starts
    await dialog
      .getByText(/stops before the failover begins; once it has, the failover cannot be cancelled/)
      .waitFor();
    await dialog.getByText("cannot be cancelled once started").waitFor();
    const v = await view(it);
    assert.match(
      (await dialog.locator(".direction").textContent()) ?? "",
      new RegExp(`${v.source} → ${v.target}$`),
    );
    assert.equal(await start.isDisabled(), true, "Start is off before the name is typed");
    await shot(page, "failover-open");
    // focus starts on the first control: the chosen point
    assert.equal(await page.evaluate(() => (document.activeElement as HTMLInputElement).value), "latest");
    // each option says its trade-off and the point's age
    await dialog.getByText(/lowest RPO/).waitFor();
    await dialog.getByText(/Latest processed · 2 min old/).waitFor();
    await dialog.getByText(/Latest app-consistent · 62 min old, app-consistent/).waitFor();
    // shut down first: checked by default, with why
    assert.equal(
      await dialog
        .getByRole("checkbox", { name: /Shut down the machine before beginning failover/ })
        .isChecked(),
      true,
    );
    await dialog.getByText(/Replication .* stops before the failover begins\./).waitFor();
    await assertLabelled(page);

    const confirm = dialog.getByRole("textbox", { name: `Type ${it.name} to confirm` });
    // typing is not an error yet: the mismatch is said once the field is left
    await confirm.pressSequentially(it.name.slice(0, 2));
    await page.waitForTimeout(100);
    assert.equal(await dialog.getByText("that is not the item's name").count(), 0, "no error while typing");
    assert.equal(await dialog.locator(".field-error").count(), 0);
    await confirm.fill(it.name.toUpperCase());
    await confirm.blur();
    await dialog.getByText(`that is not the item's name: type ${it.name}`).waitFor();
    assert.equal(await start.isDisabled(), true, "a wrong name keeps Start off");
    await confirm.fill(it.name);
    await page.waitForFunction(
      () => !(document.querySelector("dialog button[type=submit]") as HTMLButtonElement).disabled,
    );
    assert.equal(await start.isEnabled(), true, "the right name turns Start on");
    await shot(page, "failover");
    await page.close();
  });

  it("failover wants a point chosen when A specific point is picked, then asks the vault about that one", async () => {
    const it = item("protected");
    const page = await open("failover", it, { routes: answerPoints(it) });
    const dialog = page.getByRole("dialog");
    await dialog.getByRole("textbox", { name: `Type ${it.name} to confirm` }).fill(it.name);
    await dialog.getByRole("radio", { name: /A specific point/ }).check();
    await dialog.getByText("choose a recovery point from the list").waitFor();
    assert.equal(await dialog.getByRole("button", { name: "Fail over" }).isDisabled(), true);
    assert.equal(await dialog.locator(".dialog-status").textContent(), "Fix what is marked above");

    const chosen = POINTS[1]!.id;
    const asked = page.waitForRequest(
      (r) => isDryRun("failover")(new URL(r.url())) && JSON.parse(r.postData() ?? "{}").point === chosen,
    );
    await dialog.getByRole("combobox", { name: "Point to use" }).selectOption(chosen);
    await asked;
    assert.equal(await dialog.getByText("choose a recovery point from the list").count(), 0);
    // the vault holds none of these points: its refusal, named, keeps Start off
    await dialog.locator(".refusal").filter({ hasText: "POINT_NONE_AVAILABLE" }).waitFor();
    assert.equal(await dialog.getByRole("button", { name: "Fail over" }).isDisabled(), true);
    await page.close();
  });

  it("reprotect shows the vault's refusal with its code before anything starts, and keeps Start off", async () => {
    const it = item("failover-committed");
    const page = await open("reprotect", it);
    const dialog = page.getByRole("dialog");
    const refusal = dialog.locator(".refusal").filter({ hasText: "REPROTECT_MACHINE_NOT_RUNNING" });
    await refusal.waitFor();
    await refusal.getByText(/reprotect replicates a running machine/).waitFor();
    assert.equal(await dialog.getByRole("button", { name: "Reprotect" }).isDisabled(), true);
    assert.equal(
      await dialog.locator(".dialog-status").textContent(),
      "Refused: REPROTECT_MACHINE_NOT_RUNNING",
    );
    // the one live line says it, short; the refusal itself is not a live region
    assert.equal(
      await dialog.getByRole("status").textContent(),
      "The vault refuses this: REPROTECT_MACHINE_NOT_RUNNING",
    );
    assert.equal(await dialog.locator("[aria-live], [role=alert]").count(), 0);
    // it replicates from where the machine runs now back to where it came from
    const v = await view(it);
    assert.match(
      (await dialog.locator(".direction").textContent()) ?? "",
      new RegExp(`${v.target} → ${v.source}$`),
    );
    // the choices are the return site's, its default first
    const seededSite = v.source;
    const ps = dialog.getByRole("combobox", { name: "Process server" });
    assert.match(
      (await ps.locator("option").first().textContent()) ?? "",
      new RegExp(`^${seededSite}-appliance \\(default\\)`),
    );
    assert.match(
      (await dialog.getByRole("combobox", { name: "Datastore" }).locator("option").first().textContent()) ??
        "",
      new RegExp(`^${seededSite}-local \\(default\\)`),
    );
    await assertLabelled(page);
    // the seeded machine left no disks at the return site: the dialog opens on the alternate location
    assert.equal((await api("GET", `/v1/items/${it.name}`)).body.disksAtReturnSite, false);
    assert.equal(await page.evaluate(() => (document.activeElement as HTMLInputElement).value), "alternate");
    await dialog.getByText(/The vault holds no disks of .* at .* now\./).waitFor();
    await shot(page, "reprotect-refused");

    // a change of option asks again (debounced), and the refusal stays until the vault says yes
    const asked = page.waitForRequest(
      (r) =>
        isDryRun("reprotect")(new URL(r.url())) && JSON.parse(r.postData() ?? "{}").location === "original",
    );
    await dialog.getByRole("radio", { name: /Original location/ }).check();
    await asked;
    await refusal.waitFor();
    assert.equal(await dialog.getByRole("button", { name: "Reprotect" }).isDisabled(), true);
    await page.close();
  });

  it("reprotect: the refusal that a choice fixes goes away when it is made", async () => {
    const it = item("failover-committed");
    const page = await open("reprotect", it, {
      // the item as the vault recorded it before the disks went: the dialog opens on original
      patch: { disksAtReturnSite: true },
      routes: async (p) => {
        // component test: a committed item whose disks are gone but whose machine runs takes real
        // machines to reach; the dry run answers here as the vault does for one
        await p.route(
          (u) => isDryRun("reprotect")(u),
          (r: Route) => {
            const body = JSON.parse(r.request().postData() ?? "{}") as { location?: string };
            if (body.location === "alternate") {
              return r.fulfill({
                status: 202,
                json: {
                  ...decision("reprotect", [`replicates recovery → primary into new disks (a full copy)`]),
                },
              });
            }
            return r.fulfill({
              status: 409,
              contentType: "application/problem+json",
              json: {
                type: "urn:switchback:problem:REPROTECT_ORIGINAL_DISKS_GONE",
                title: "REPROTECT_ORIGINAL_DISKS_GONE",
                status: 409,
                code: "REPROTECT_ORIGINAL_DISKS_GONE",
                detail:
                  "the machine's disks at primary are gone; reprotect to an alternate location (--location alternate) to create new ones",
              },
            });
          },
        );
      },
    });
    const dialog = page.getByRole("dialog");
    await dialog.locator(".refusal").filter({ hasText: "REPROTECT_ORIGINAL_DISKS_GONE" }).waitFor();
    await dialog.getByText("Choose Alternate location to copy the machine into new disks.").waitFor();
    await shot(page, "reprotect-disks-gone");
    assert.equal(await dialog.getByRole("button", { name: "Reprotect" }).isDisabled(), true);
    await dialog.getByRole("radio", { name: /Alternate location/ }).check();
    await dialog.getByText("replicates recovery → primary into new disks (a full copy)").waitFor();
    assert.equal(await dialog.locator(".refusal").count(), 0);
    assert.equal(await dialog.getByRole("button", { name: "Reprotect" }).isEnabled(), true);
    await page.close();
  });

  it("cleanup refuses notes over 4000 characters and shows the vault's error when the start fails", async () => {
    const it = item("protected");
    const v = await view(it);
    const drill = {
      point: POINTS[0]!.id,
      instanceId: "drill-abc",
      site: v.target,
      jobId: "job-1",
    };
    const page = await open("test-failover-cleanup", it, {
      patch: { drill },
      routes: async (p) => {
        // component test: the seeded item runs no drill, so the vault would refuse the dry run
        await p.route(
          (u) => isDryRun("test-failover-cleanup")(u),
          (r: Route) =>
            r.fulfill({
              status: 202,
              json: decision("test-failover-cleanup", [
                `deletes the test copy of the machine at ${v.target} and its disks`,
              ]),
            }),
        );
      },
    });
    const dialog = page.getByRole("dialog");
    const start = dialog.getByRole("button", { name: "Clean up" });
    const notes = dialog.getByRole("textbox", { name: "Notes" });
    assert.equal(await page.evaluate(() => document.activeElement?.tagName), "TEXTAREA");
    await dialog.getByText(`deletes the test copy of the machine at ${v.target} and its disks`).waitFor();
    await notes.fill("x".repeat(4001));
    await dialog.getByText("notes are 4001 characters, 1 over the 4000 kept: shorten them").waitFor();
    await dialog.getByText(/4001 \/ 4000 characters/).waitFor();
    assert.equal(await start.isDisabled(), true, "too long: Start off");
    assert.equal(await notes.getAttribute("aria-invalid"), "true");
    await notes.fill("x".repeat(4000));
    await dialog.getByText(/4000 \/ 4000 characters/).waitFor();
    assert.equal(await start.isEnabled(), true, "4000 characters are kept");
    await notes.fill("drill ok: services answered");
    await shot(page, "cleanup");
    // the start itself goes to the real vault, which has no drill to clean up: its error, by code
    await start.click();
    await dialog.getByRole("alert").filter({ hasText: "DRILL_NOT_ACTIVE" }).waitFor();
    await dialog.getByText("Not started:").waitFor();
    assert.deepEqual(await harnessRecord(page).then((h) => h.started), []);
    await page.close();
  });

  it("commit lists what it deletes and says it cannot be undone", async () => {
    const it = item("failed-over");
    const v = await view(it);
    const deletes = `deletes the item's recovery points at ${v.target}; the point can no longer be changed`;
    // first as the vault answers for the seeded item: its recovered machine is not running
    const refused = await open("commit", it);
    await refused.locator(".refusal").filter({ hasText: "COMMIT_RECOVERED_MACHINE_NOT_RUNNING" }).waitFor();
    await refused.close();

    const page = await open("commit", it, {
      routes: async (p) => {
        // component test: a running recovered machine takes a real failover; the vault's answer for one
        await p.route(
          (u) => isDryRun("commit")(u),
          (r: Route) =>
            r.fulfill({
              status: 202,
              json: decision("commit", [deletes], { irreversible: true }),
            }),
        );
      },
    });
    const dialog = page.getByRole("dialog");
    const list = dialog.locator(".consequences li");
    await list.first().waitFor();
    assert.deepEqual(await list.allInnerTexts(), [deletes]);
    await dialog.getByText("This cannot be undone.").waitFor();
    assert.equal(await dialog.getByRole("button", { name: "Commit" }).isDisabled(), true);
    assert.equal(await page.evaluate(() => document.activeElement?.tagName), "INPUT", "focus on the name");
    await dialog.getByRole("textbox", { name: `Type ${it.name} to confirm` }).fill(it.name);
    await page.waitForFunction(
      () => !(document.querySelector("dialog button[type=submit]") as HTMLButtonElement).disabled,
    );
    await shot(page, "commit");
    await page.close();
  });

  it("change point restarts the machine from another point, never the one it runs from", async () => {
    const it = item("failed-over");
    const running = (await api("GET", `/v1/items/${it.name}`)).body.failover.point as string;
    const page = await open("change-point", it, {
      routes: async (p) => {
        // component test: the points held, the one the machine runs from among them
        await p.route(
          (u) => u.pathname === `/v1/items/${it.id}/points`,
          (r: Route) =>
            r.fulfill({
              json: [
                ...POINTS.slice(0, 2),
                {
                  id: running,
                  createdAt: new Date(Date.now() - 1800e3).toISOString(),
                  consistency: "crash",
                  ageSeconds: 1800,
                },
                POINTS[2],
              ],
            }),
        );
      },
    });
    const dialog = page.getByRole("dialog");
    await dialog.getByText(/stops and restarts from the point you choose/).waitFor();
    await dialog.getByText(/Anything the machine wrote since the failover is lost/).waitFor();
    // no point is chosen for the operator: the specific point is the default, and focused
    assert.equal(await dialog.getByRole("radio", { name: /A specific point/ }).isChecked(), true);
    assert.equal(await page.evaluate(() => (document.activeElement as HTMLInputElement).value), "custom");
    assert.equal(
      await dialog.locator("input[type=radio][value=latest]").count(),
      0,
      "no Latest after a failover",
    );
    const select = dialog.getByRole("combobox", { name: "Point to use" });
    await select.selectOption(running);
    await dialog.getByText("the machine runs from this point already: choose another").waitFor();
    assert.equal(await dialog.getByRole("button", { name: "Change point" }).isDisabled(), true);
    await shot(page, "change-point");
    const asked = page.waitForRequest(
      (r) =>
        isDryRun("change-point")(new URL(r.url())) &&
        JSON.parse(r.postData() ?? "{}").point === POINTS[1]!.id,
    );
    await select.selectOption(POINTS[1]!.id);
    await asked;
    assert.equal(await dialog.getByText("the machine runs from this point already").count(), 0);
    await assertLabelled(page);
    await page.close();
  });

  it("test failover shows the test network and that replication goes on", async () => {
    const it = item("protected", 1);
    const page = await open("test-failover", it, { routes: answerPoints(it) });
    const dialog = page.getByRole("dialog");
    await dialog.getByText("drill-net").waitFor();
    await dialog.getByText(/runs isolated on the test network/).waitFor();
    await dialog.getByText(/goes on and the machine at/).waitFor();
    // the default for a drill: the newest processed point
    assert.equal(await dialog.getByRole("radio", { name: /Latest processed/ }).isChecked(), true);
    await assertLabelled(page);
    await shot(page, "test-failover");
    await page.close();
  });

  it("Escape closes a dialog", async () => {
    const it = item("protected", 2);
    const page = await open("disable", it);
    assert.equal(await page.evaluate(() => document.activeElement?.tagName), "INPUT");
    await page.keyboard.press("Escape");
    await page.getByText("dialog closed").waitFor();
    assert.equal(await page.getByRole("dialog").count(), 0);
    assert.equal(await harnessRecord(page).then((h) => h.closed), 1);
    await page.close();
  });

  it("disable, confirmed by name, starts the vault's job and hands it on", async () => {
    const it = item("protected", 2);
    const page = await open("disable", it);
    const dialog = page.getByRole("dialog");
    await dialog.getByText(/stops replication .* and deletes the item's recovery points/).waitFor();
    await dialog.getByText(/Every recovery point of .* is deleted\./).waitFor();
    const start = dialog.getByRole("button", { name: "Disable replication" });
    assert.equal(await start.isDisabled(), true);
    await assertLabelled(page);
    await shot(page, "disable");
    await dialog.getByRole("textbox", { name: `Type ${it.name} to confirm` }).fill(it.name);
    await page.keyboard.press("Enter");
    await page.getByText("dialog closed").waitFor();
    const started = await harnessRecord(page).then((h) => h.started);
    assert.equal(started.length, 1);
    const job = await api("GET", `/v1/jobs/${started[0]!.id}`);
    assert.equal(job.status, 200);
    assert.equal(job.body.kind, "disable");
    await page.close();
  });

  it("a 404 or 400 of the dry run is the vault's refusal, with its code; a 5xx or no answer is not", async () => {
    const it = item("failed-over");
    let answer = problem(
      404,
      "POINT_NOT_FOUND",
      "no recovery point 20260101T000000Z-abcdef is held for the item",
    );
    const page = await open("change-point", it, {
      routes: async (p) => {
        await answerPoints(it)(p);
        // component test: the vault's answers for a point pruned meanwhile, then for a vault in trouble
        await p.route(
          (u) => isDryRun("change-point")(u),
          (r: Route) => r.fulfill(answer),
        );
      },
    });
    const dialog = page.getByRole("dialog");
    await dialog.getByRole("combobox", { name: "Point to use" }).selectOption(POINTS[1]!.id);
    const refusal = dialog.locator(".refusal").filter({ hasText: "POINT_NOT_FOUND" });
    await refusal.waitFor();
    await refusal.getByText("The point was pruned: choose another.").waitFor();
    assert.equal(await dialog.locator(".dialog-status").textContent(), "Refused: POINT_NOT_FOUND");
    assert.equal(await dialog.getByText("Could not check with the vault").count(), 0);

    answer = problem(400, "INVALID_REQUEST", "body/point: must NOT have more than 64 characters");
    await refusal.getByRole("button", { name: "Check again" }).click();
    await dialog.locator(".refusal").filter({ hasText: "INVALID_REQUEST" }).waitFor();

    answer = problem(503, "DB_UNREACHABLE", "the database did not answer");
    await dialog.getByRole("button", { name: "Check again" }).click();
    await dialog.locator(".check-failed").filter({ hasText: "DB_UNREACHABLE" }).waitFor();
    assert.equal(await dialog.locator(".refusal").count(), 0);
    assert.equal(await dialog.getByRole("status").textContent(), "Could not check with the vault");
    assert.equal(await dialog.locator(".dialog-status").textContent(), "The vault could not check it");
    await page.close();
  });

  it("the dry run names the point it resolved, and Start sends exactly that one", async () => {
    const it = item("protected", 1);
    const v = await view(it);
    const resolved = { ...POINTS[1]!, ageSeconds: 3 };
    const starts: Record<string, unknown>[] = [];
    const page = await open("test-failover", it, {
      routes: async (p) => {
        await answerPoints(it)(p);
        // component test: the seeded item holds no points; the vault's answer for one that does
        await p.route(
          (u) => u.pathname.endsWith("/test-failover"),
          (r: Route) => {
            const body = JSON.parse(r.request().postData() ?? "{}") as { point?: string };
            const dry = new URL(r.request().url()).searchParams.get("dryRun") === "true";
            if (!dry) starts.push(body);
            const answer = decision("test-failover", [
              `starts a copy of the machine at ${v.target} on its test network; replication goes on`,
            ]);
            return r.fulfill({
              status: 202,
              json: {
                job: dry ? null : { id: "job-pinned", kind: "test-failover", state: "queued" },
                decision: {
                  ...answer.decision,
                  ...(body.point === "latest" ? { drain: true } : { point: resolved }),
                },
              },
            });
          },
        );
      },
    });
    const dialog = page.getByRole("dialog");
    const pin = dialog.locator(".decision-point");
    await pin.filter({ hasText: `Will use point ${resolved.id} from ` }).waitFor();
    assert.match(
      (await pin.textContent()) ?? "",
      /, 3 s old \(crash-consistent\): Start sends exactly this point/,
    );
    await shot(page, "test-failover-pinned");
    // latest cuts a new point: nothing to name, and the dialog says so
    await dialog.getByRole("radio", { name: /^Latest ·/ }).check();
    await pin.filter({ hasText: "Latest cuts a new point when it starts" }).waitFor();
    await dialog.getByRole("radio", { name: /Latest processed/ }).check();
    await pin.filter({ hasText: resolved.id }).waitFor();
    await page.waitForFunction(
      () => !(document.querySelector("dialog button[type=submit]") as HTMLButtonElement).disabled,
    );
    await dialog.getByRole("button", { name: "Start test failover" }).click();
    await page.getByText("dialog closed").waitFor();
    assert.deepEqual(starts, [{ point: resolved.id }], "the keyword was replaced by the point shown");
    assert.deepEqual(await harnessRecord(page).then((h) => h.started), [{ id: "job-pinned" }]);
    await page.close();
  });

  it("failover defaults to latest processed when the source machine's agent is not online", async () => {
    const it = item("protected");
    const asked: string[] = [];
    const page = await open("failover", it, {
      routes: async (p) => {
        await answerPoints(it)(p);
        // component test: the seeded agents report; this one is answered as lost
        await p.route(
          (u) => /^\/v1\/machines\/[^/]+$/.test(u.pathname),
          async (r: Route) => {
            const real = await r.fetch();
            const m = await real.json();
            return r.fulfill({ response: real, json: { ...m, health: { ...m.health, liveness: "lost" } } });
          },
        );
        p.on("request", (r) => {
          if (isDryRun("failover")(new URL(r.url()))) asked.push(JSON.parse(r.postData() ?? "{}").point);
        });
      },
    });
    const dialog = page.getByRole("dialog");
    await dialog.getByText(/Its agent is lost/).waitFor();
    await page.waitForFunction(
      () =>
        (document.querySelector("input[type=radio][value=latest-processed]") as HTMLInputElement)?.checked,
    );
    await dialog.locator(".refusal, .decision").first().waitFor();
    assert.equal(asked[0], "latest-processed", "the vault is never asked about latest first");
    assert.equal(asked.includes("latest"), false);
    // the operator's own choice stands
    await dialog.getByRole("radio", { name: /^Latest ·/ }).check();
    assert.equal(await dialog.getByRole("radio", { name: /^Latest ·/ }).isChecked(), true);
    await page.close();
  });

  it("a planned failover forces latest and the shutdown, and asks the vault for planned", async () => {
    const it = item("protected");
    const page = await open("failover", it, { routes: answerPoints(it) });
    const dialog = page.getByRole("dialog");
    const planned = dialog.getByRole("checkbox", { name: /Planned failover/ });
    await dialog.getByText(/No data loss: the machine at .* takes a final point and shuts down/).waitFor();
    assert.equal(await planned.isChecked(), false, "unplanned by default");
    await dialog.getByRole("radio", { name: /Latest processed/ }).check();
    await dialog.getByRole("checkbox", { name: /Shut down the machine/ }).uncheck();
    const asked = page.waitForRequest((r) => {
      if (!isDryRun("failover")(new URL(r.url()))) return false;
      const b = JSON.parse(r.postData() ?? "{}");
      return b.planned === true && b.point === "latest" && b.shutdownSource === true;
    });
    await planned.check();
    await asked;
    assert.equal(await dialog.getByRole("radio", { name: /^Latest ·/ }).isChecked(), true);
    assert.equal(await dialog.getByRole("radio", { name: /Latest processed/ }).isDisabled(), true);
    const shutdown = dialog.getByRole("checkbox", { name: /Shut down the machine/ });
    assert.equal(await shutdown.isChecked(), true);
    assert.equal(await shutdown.isDisabled(), true);
    await dialog.getByText("A planned failover always uses Latest.").waitFor();
    // the real vault's answer: it drains first, so the point cannot be named now
    await dialog.locator(".decision-point").filter({ hasText: "Latest cuts a new point" }).waitFor();
    await dialog.getByText("shuts the source machine down first").waitFor();
    await shot(page, "failover-planned");
    await page.close();
  });

  it("a failover left failing over is resumed with the request of the job that began it", async () => {
    const it = item("protected", 4);
    const v = await view(it);
    const began = {
      id: "job-began",
      kind: "failover",
      params: { point: POINTS[2]!.id, shutdownSource: true, planned: false, drain: false },
    };
    const sent: { dry: boolean; body: Record<string, unknown> }[] = [];
    const page = await open("failover", it, {
      patch: { phase: "failing-over", allowedOperations: ["failover"] },
      routes: async (p) => {
        // component test: a failover stopped after the point of no return takes a real failover
        await p.route(
          (u) => u.pathname === "/v1/jobs",
          (r: Route) => r.fulfill({ json: [began] }),
        );
        await p.route(
          (u) => u.pathname.endsWith("/failover"),
          (r: Route) => {
            const dry = new URL(r.request().url()).searchParams.get("dryRun") === "true";
            sent.push({ dry, body: JSON.parse(r.request().postData() ?? "{}") });
            return r.fulfill({
              status: 202,
              json: {
                job: dry ? null : { id: "job-resume", kind: "failover", state: "queued" },
                decision: decision("failover", [`resumes the failover to ${v.target} where it stopped`], {
                  irreversible: true,
                }).decision,
              },
            });
          },
        );
      },
    });
    const dialog = page.getByRole("dialog");
    await dialog.getByRole("heading", { name: `Resume failover: ${it.name}` }).waitFor();
    await dialog.getByText(`resumes the failover to ${v.target} where it stopped`).waitFor();
    await dialog.getByText(/cannot go back: resuming takes it on from the step where it stopped/).waitFor();
    assert.equal(await dialog.locator("input").count(), 0, "no point, shutdown or planned choice");
    await dialog.getByText("job-began").waitFor();
    await shot(page, "failover-resume");
    const start = dialog.getByRole("button", { name: "Resume failover" });
    await page.waitForFunction(
      () => !(document.querySelector("dialog button[type=submit]") as HTMLButtonElement).disabled,
    );
    await start.click();
    await page.getByText("dialog closed").waitFor();
    const want = { point: POINTS[2]!.id, shutdownSource: true };
    assert.deepEqual(sent[0], { dry: true, body: want });
    assert.deepEqual(sent.at(-1), { dry: false, body: want });
    assert.deepEqual(await harnessRecord(page).then((h) => h.started), [{ id: "job-resume" }]);
    await page.close();
  });

  it("a refusal that wants the machine running offers to start it, then checks again", async () => {
    const it = item("failover-committed");
    const page = await open("reprotect", it);
    const dialog = page.getByRole("dialog");
    const refusal = dialog.locator(".refusal").filter({ hasText: "REPROTECT_MACHINE_NOT_RUNNING" });
    await refusal.waitFor();
    const startMachine = refusal.getByRole("button", { name: "Start the machine" });
    // the real vault: the seeded machine was not defined by the vault, so it cannot start it
    await startMachine.click();
    await refusal.getByText(/Could not start it:/).waitFor();
    await refusal.getByText("MACHINE_NOT_STARTABLE").waitFor();
    // component test: a machine the vault defined starts; the dry run is asked again at once
    const machineStarts: string[] = [];
    await page.route(
      (u) => u.pathname.endsWith("/start") && u.pathname.startsWith("/v1/machines/"),
      (r: Route) => {
        machineStarts.push(new URL(r.request().url()).pathname);
        return r.fulfill({ json: { instanceId: "i-1", pid: 1 } });
      },
    );
    const asked = page.waitForRequest((r) => isDryRun("reprotect")(new URL(r.url())));
    await startMachine.click();
    await asked;
    assert.deepEqual(machineStarts, [`/v1/machines/${it.machineId}/start`]);
    await refusal.getByText(/Started\. If the vault still refuses, wait for its agent/).waitFor();
    await shot(page, "reprotect-start-machine");
    await page.close();
  });

  it("while Start is under way the dialog cannot be closed", async () => {
    const it = item("protected", 1);
    let release: () => void = () => {};
    const held = new Promise<void>((res) => {
      release = res;
    });
    const page = await open("disable", it, {
      routes: async (p) => {
        // component test: the start is held until the test lets it through
        await p.route(
          (u) => u.pathname.endsWith("/disable") && u.searchParams.get("dryRun") !== "true",
          async (r: Route) => {
            await held;
            return r.fulfill({
              status: 202,
              json: {
                ...decision("disable", ["stops replication"]),
                job: { id: "job-held", kind: "disable", state: "queued" },
              },
            });
          },
        );
      },
    });
    const dialog = page.getByRole("dialog");
    await dialog.getByRole("textbox", { name: `Type ${it.name} to confirm` }).fill(it.name);
    const start = dialog.getByRole("button", { name: "Disable replication" });
    await page.waitForFunction(
      () => !(document.querySelector("dialog button[type=submit]") as HTMLButtonElement).disabled,
    );
    await start.click();
    await dialog.getByRole("button", { name: "Starting…" }).waitFor();
    assert.equal(await dialog.getByRole("button", { name: "Cancel" }).isDisabled(), true);
    await page.keyboard.press("Escape");
    assert.equal(await dialog.getByRole("button", { name: "Close" }).isDisabled(), true);
    await dialog.getByRole("button", { name: "Close" }).click({ force: true });
    await page.waitForTimeout(150);
    assert.equal(await page.getByText("dialog open").count(), 1, "Escape and × are ignored while starting");
    assert.equal(await harnessRecord(page).then((h) => h.closed), 0);
    release();
    await page.getByText("dialog closed").waitFor();
    assert.deepEqual(await harnessRecord(page).then((h) => h.started), [{ id: "job-held" }]);
    await page.close();
  });

  it("the name's mismatch is said after the field is left or Start is pressed, not while typing", async () => {
    const it = item("protected", 3);
    const page = await open("disable", it);
    const dialog = page.getByRole("dialog");
    await dialog.locator(".decision").waitFor();
    // Enter with nothing typed: the field says what is wanted
    await page.keyboard.press("Enter");
    await dialog
      .getByRole("alert")
      .filter({ hasText: `type ${it.name} to confirm` })
      .waitFor();
    await page.close();
  });

  it("the dry run is asked again when the item's state changes, not when a new point arrives", async () => {
    const it = item("protected", 3);
    const page = await open("disable", it);
    const dialog = page.getByRole("dialog");
    await dialog.locator(".decision").waitFor();
    let asked = 0;
    page.on("request", (r) => {
      if (isDryRun("disable")(new URL(r.url()))) asked++;
    });
    const patch = (f: object) =>
      page.evaluate((x) => (window as unknown as { harnessPatch: (f: object) => void }).harnessPatch(x), f);
    await patch({ updatedAt: new Date().toISOString(), latestPoint: null });
    await page.waitForTimeout(700);
    assert.equal(asked, 0, "a new point (updatedAt) does not ask again");
    const again = page.waitForRequest((r) => isDryRun("disable")(new URL(r.url())));
    await patch({ generation: 7 });
    await again;
    assert.equal(asked, 1);
    await page.close();
  });

  it("disable after a committed failover says the machine keeps running at the target", async () => {
    const it = item("failover-committed");
    const v = await view(it);
    const page = await open("disable", it);
    const dialog = page.getByRole("dialog");
    await dialog
      .getByText(
        `${it.name} runs at ${v.target} since its failover was committed, and nothing replicates it now.`,
        {
          exact: false,
        },
      )
      .waitFor();
    await dialog.getByText(/cannot be reprotected or failed back to/).waitFor();
    assert.equal(await dialog.getByText(/Every recovery point of/).count(), 0);
    assert.equal(await dialog.getByText(`The machine at ${v.source} keeps running`).count(), 0);
    await shot(page, "disable-committed");
    await page.close();
  });
});
