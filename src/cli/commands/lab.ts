// switchback lab: two sites on one host for drills, tests and benchmarks (docs/operations.md, "Two
// sites on one host"). Root only: it makes network namespaces, bridges and veth links.
import type { Command } from "commander";
import { printJson } from "../output.ts";

export function register(program: Command): void {
  const lab = program
    .command("lab")
    .description("two sites on this host (network namespaces, bridges, a link that can be cut); root only");
  lab
    .command("up")
    .description("build the two sites and write each site's networks file for its appliance")
    .option("--name <name>", "the lab's name (1-4 letters or digits)", "sbl")
    .option("--sites <a,b>", "the two sites' names", "primary,recovery")
    .option(
      "--base <n>",
      "its addresses: 10.<n>.0.0/16 for the vault and links, 10.<n+1>.0.0/16 for the sites",
      "70",
    )
    .option("--replace", "tear down a lab of this name, or on these addresses, first")
    .option("--json", "print JSON")
    .action(async (o: { name: string; sites: string; base: string; replace?: boolean; json?: boolean }) => {
      const { labUp } = await import("../../lab/lab.ts");
      const [a, b, ...rest] = o.sites.split(",");
      if (a === undefined || b === undefined || rest.length > 0) {
        const { SwitchbackError } = await import("../../domain/errors.ts");
        throw new SwitchbackError(
          "INVALID_OPTION",
          `--sites takes two names separated by a comma, not ${o.sites}`,
        );
      }
      const l = await labUp({
        name: o.name,
        sites: [a, b],
        base: Number(o.base),
        ...(o.replace === true ? { replace: true } : {}),
      });
      if (o.json === true) return printJson(l);
      console.log(`lab ${l.name} is up; the vault listens on ${l.vault} (host loopback)`);
      for (const s of l.sites) {
        console.log(
          `  site ${s.name}: namespace ${s.netns}, subnet ${s.subnet} (gateway and appliance ${s.gateway}), edge ${s.edgeAddress}, test network ${s.testNetns}; networks file ${s.networksFile}`,
        );
      }
    });
  lab
    .command("down")
    .description("remove the lab's namespaces, links and files (stop its machines first)")
    .option("--name <name>", "the lab's name", "sbl")
    .action(async (o: { name: string }) => {
      const { labDown } = await import("../../lab/lab.ts");
      await labDown(o.name);
    });
  lab
    .command("cut")
    .description("cut a link: inter-site, uplink:<site> (the site and the vault), site:<site> (both)")
    .argument("<link>")
    .option("--name <name>", "the lab's name", "sbl")
    .action(async (link: string, o: { name: string }) => {
      const { labCut } = await import("../../lab/lab.ts");
      await labCut(o.name, link);
    });
  lab
    .command("restore")
    .description("restore a link cut before")
    .argument("<link>")
    .option("--name <name>", "the lab's name", "sbl")
    .action(async (link: string, o: { name: string }) => {
      const { labRestore } = await import("../../lab/lab.ts");
      await labRestore(o.name, link);
    });
  lab
    .command("status")
    .description("the lab's sites and which links are up")
    .option("--name <name>", "the lab's name", "sbl")
    .option("--json", "print JSON")
    .action(async (o: { name: string; json?: boolean }) => {
      const { labStatus } = await import("../../lab/lab.ts");
      const s = await labStatus(o.name);
      if (o.json === true) return printJson(s);
      for (const [link, up] of Object.entries(s.links))
        console.log(`${link.padEnd(24)} ${up ? "up" : "cut"}`);
    });
}
