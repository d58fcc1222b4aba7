// CSS files are bundled by esbuild (scripts/portal-build.ts); importing one has no value.
declare module "*.css";
