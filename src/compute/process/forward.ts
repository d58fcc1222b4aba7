// A public port of a privileged machine: started by the machine's boot wrapper inside the site's edge
// namespace, in the machine's process group (it ends with the machine), it forwards TCP connections
// from <edge address>:<public port> to <machine address>:<service port>, byte for byte.
//   node forward.ts <edge address>:<public port>=<machine address>:<service port>
import net from "node:net";

function parse(spec: string): { listen: [string, number]; to: [string, number] } {
  const m = /^([\d.]+):(\d+)=([\d.]+):(\d+)$/.exec(spec);
  if (m === null) {
    console.error(`forward: ${JSON.stringify(spec)} is not <address>:<port>=<address>:<port>`);
    process.exit(2);
  }
  return { listen: [m[1] as string, Number(m[2])], to: [m[3] as string, Number(m[4])] };
}

const f = parse(process.argv[2] ?? "");
const server = net.createServer((client) => {
  const upstream = net.connect(f.to[1], f.to[0]);
  client.pipe(upstream).pipe(client);
  const end = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on("error", end);
  upstream.on("error", end);
});
server.on("error", (err) => {
  console.error(`forward: cannot listen on ${f.listen.join(":")}: ${err.message}`);
  process.exit(1);
});
server.listen(f.listen[1], f.listen[0], () => {
  console.log(`forward: ${f.listen.join(":")} -> ${f.to.join(":")}`);
});
for (const s of ["SIGTERM", "SIGINT"] as const) process.on(s, () => process.exit(0));
