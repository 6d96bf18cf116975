// Writes schema.d.ts from a running service's /openapi.json: `node generate.mjs http://127.0.0.1:8000`.
// openapi-typescript types `format: binary` as a string unless told otherwise; this is its documented
// transform for uploads and pictures (https://openapi-ts.dev/node#example-blob-types).
import fs from "node:fs";
import openapiTS, { astToString } from "openapi-typescript";
import ts from "typescript";

const BLOB = ts.factory.createTypeReferenceNode(ts.factory.createIdentifier("Blob"));
const base = process.argv[2] ?? "http://127.0.0.1:8000";
const ast = await openapiTS(new URL("/openapi.json", base), {
  defaultNonNullable: false, // a form field with a default may be left out
  transform(schema) {
    return schema.format === "binary" ? BLOB : undefined;
  },
});
fs.writeFileSync(process.argv[3] ?? "schema.d.ts", astToString(ast));
