import { createRequire } from "node:module";

/** The package's version (from its package.json): the version of the `leap0-sdk-js` tracer and meter. */
export const SDK_VERSION: string = (createRequire(import.meta.url)("../package.json") as { version: string }).version;
