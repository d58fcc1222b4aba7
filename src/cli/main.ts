#!/usr/bin/env node
// Entry point of the switchback command line. It turns on Node's compile cache before anything else
// is loaded (a warm start then skips recompiling our modules), then runs the program.
import { enableCompileCache } from "node:module";

enableCompileCache?.();
const { main } = await import("./program.ts");
process.exitCode = await main(process.argv);
