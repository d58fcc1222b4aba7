// switchback tokens [list [--all] | create NAME [--role admin|viewer] | revoke TOKEN | whoami]
// Operators' named tokens: admin (everything) and viewer (every read, nothing else). Each job records
// the name of the token that started it, so a token per person is an audit of who did what.
import { type Command, Option } from "commander";
import type { NewTokenView, TokenView, Whoami } from "../../vault/http/routes/tokens.ts";
import { printFields, printJson, printRecords } from "../output.ts";
import { seg, type VaultFlags, vaultClient, withVault } from "../vault-client.ts";

type Flags = VaultFlags & { json?: boolean };

export function register(program: Command): void {
  const tokens = program
    .command("tokens")
    .description("operators' tokens: admin (everything) and viewer (read only)");
  withVault(
    tokens.command("list", { isDefault: true }).description("list the operator tokens (never their secrets)"),
  )
    .option("--all", "the machines' tokens too (agent, enrol, appliance)")
    .option("--json", "print the result as JSON")
    .action(async (o: Flags & { all?: boolean }) => {
      const list = await vaultClient(o).get<TokenView[]>("/v1/tokens", { all: o.all ? "true" : undefined });
      if (o.json) return printJson(list);
      printRecords(
        list,
        [
          ["NAME", (t) => (t.current ? `${t.name} (you)` : t.name)],
          ["ROLE", (t) => t.role],
          ["ID", (t) => t.id],
          ["CREATED", (t) => t.createdAt],
          ["BY", (t) => t.createdBy ?? "-"],
          ["LAST USED", (t) => t.lastUsedAt ?? "never"],
        ],
        "no tokens",
      );
    });
  withVault(
    tokens
      .command("create")
      .argument("<name>", "who holds it (alice, grafana, ci): unique among operator tokens")
      .description("create an operator token; its secret is printed this once"),
  )
    .addOption(
      new Option("--role <role>", "admin: everything; viewer: read only")
        .choices(["admin", "viewer"])
        .default("viewer"),
    )
    .option("--json", "print the result as JSON")
    .action(async (name: string, o: Flags & { role: "admin" | "viewer" }) => {
      const t = await vaultClient(o).post<NewTokenView>("/v1/tokens", { name, role: o.role });
      if (o.json) return printJson(t);
      process.stdout.write(
        `created ${t.role} token ${t.name} (${t.id}); its secret, shown this once:\n${t.token}\n`,
      );
    });
  withVault(
    tokens
      .command("revoke")
      .argument("<token>", "the token's id or name")
      .description("revoke an operator token: it stops working at once (the last admin token is kept)"),
  )
    .option("--json", "print the result as JSON")
    .action(async (ref: string, o: Flags) => {
      const r = await vaultClient(o).delete<{ revoked: string }>(`/v1/tokens/${seg(ref)}`);
      if (o.json) return printJson(r);
      process.stdout.write(`revoked token ${ref === r.revoked ? ref : `${ref} (${r.revoked})`}\n`);
    });
  withVault(tokens.command("whoami").description("show the token the CLI sends: its name and role"))
    .option("--json", "print the result as JSON")
    .action(async (o: Flags) => {
      const me = await vaultClient(o).get<Whoami>("/v1/whoami");
      if (o.json) return printJson(me);
      printFields([
        ["name", me.name],
        ["role", me.role],
        ["id", me.tokenId],
        ["created", me.createdAt],
        ["last used", me.lastUsedAt],
      ]);
    });
}
