// Test-only fault injection: SWITCHBACK_FAULT_KILL_AT="<op>:<n>" makes the process kill itself with
// SIGKILL right after the n-th durable step of <op> (prune, gc), so tests can prove that a kill -9 at
// every step boundary leaves the datastore whole. Tests also kill at random times; this makes the
// boundaries exhaustive. Without the variable it does nothing.
export function killAfterStep(op: string): ((step: string) => void) | undefined {
  const spec = process.env.SWITCHBACK_FAULT_KILL_AT;
  if (spec === undefined) return undefined;
  const [name, n] = spec.split(":");
  if (name !== op) return undefined;
  let left = Number(n);
  return (step: string) => {
    if (--left === 0) {
      process.stderr.write(`fault injection: killing ${op} after step "${step}"\n`);
      process.kill(process.pid, "SIGKILL");
    }
  };
}
