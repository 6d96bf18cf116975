// A frontend's use of the service through a client generated from its /openapi.json (openapi-fetch over the
// types from generate.mjs): photos up, pictures and headers down, typed errors, one picture job.
// Run: `node main.js <base URL> <photo> <face photo>`; it prints what it saw as JSON and exits 1 on a surprise.
import { readFileSync } from "node:fs";
import createClient from "openapi-fetch";
import type { components, paths } from "./schema.js";

type ErrorBody = components["schemas"]["ErrorBody"];
type JobDocument = components["schemas"]["JobDocument"];
type TransformHeaders = paths["/v1/transform"]["post"]["responses"][200]["headers"];
type AvatarHeaders = paths["/v1/avatar"]["post"]["responses"][200]["headers"];
type FormValue = Blob | string | number | boolean | null | undefined;

const [baseUrl, photoPath, facePath] = process.argv.slice(2);
const client = createClient<paths>({ baseUrl });

/** openapi-fetch sends JSON by default; the service's uploads are multipart forms. */
function form(body: Record<string, FormValue>): FormData {
  const data = new FormData();
  for (const [name, value] of Object.entries(body)) {
    if (value instanceof Blob) data.append(name, value, `${name}.jpg`);
    else if (value !== undefined && value !== null) data.append(name, String(value));
  }
  return data;
}

function check(condition: unknown, what: string): asserts condition {
  if (!condition) throw new Error(`unexpected: ${what}`);
}

/** Width and height from a PNG's IHDR chunk. */
function pngSize(bytes: Uint8Array): [number, number] {
  check(bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47, "a PNG signature");
  const view = new DataView(bytes.buffer, bytes.byteOffset);
  return [view.getUint32(16), view.getUint32(20)];
}

async function main(): Promise<void> {
  const photo = new Blob([readFileSync(photoPath)], { type: "image/jpeg" });
  const face = new Blob([readFileSync(facePath)], { type: "image/jpeg" });

  const transformed = await client.POST("/v1/transform", {
    body: { image: photo, max_side: 256 },
    bodySerializer: form,
    parseAs: "blob",
  });
  check(transformed.data, `a picture, got ${transformed.response.status}`);
  const picture = new Uint8Array(await transformed.data.arrayBuffer());
  const style: TransformHeaders["X-Style"] = transformed.response.headers.get("X-Style") ?? "";

  const avatar = await client.POST("/v1/avatar", {
    body: { image: face, size: 128 },
    bodySerializer: form,
    parseAs: "blob",
  });
  check(avatar.data, `an avatar, got ${avatar.response.status}`);
  const found: AvatarHeaders["X-Faces-Found"] = Number(avatar.response.headers.get("X-Faces-Found"));
  const avatarBytes = new Uint8Array(await avatar.data.arrayBuffer());

  const refused = await client.POST("/v1/transform", { body: { image: photo, max_side: 99999 }, bodySerializer: form });
  const error: ErrorBody | undefined = refused.error;
  check(error, "a refusal");

  const job = await pictureJob(photo);
  console.log(
    JSON.stringify({
      transform: { status: transformed.response.status, size: pngSize(picture), style },
      avatar: { size: pngSize(avatarBytes), facesFound: found },
      refused: { status: refused.response.status, code: error.error.code, fields: error.error.fields },
      job,
    }),
  );
}

/** Submit one picture as a job, follow it to the end with its own Retry-After, and download the result. */
async function pictureJob(photo: Blob): Promise<{ status: JobDocument["status"]; location: string; size: number[] }> {
  const submitted = await client.POST("/v1/jobs", { body: { file: photo, max_side: 128 }, bodySerializer: form });
  check(submitted.data, `a job, got ${submitted.response.status}`);
  let document: JobDocument = submitted.data;
  let answer: Response = submitted.response;
  const location = answer.headers.get("Location") ?? "";
  for (let polls = 0; document.status === "queued" || document.status === "running"; polls += 1) {
    check(polls < 100, "the job to end");
    const seconds = Number(answer.headers.get("Retry-After"));
    check(seconds >= 1, "a Retry-After on a job still running");
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
    const polled = await client.GET("/v1/jobs/{job_id}", { params: { path: { job_id: document.id } } });
    check(polled.data, `the job's document, got ${polled.response.status}`);
    [document, answer] = [polled.data, polled.response];
  }
  const result = await client.GET("/v1/jobs/{job_id}/result", {
    params: { path: { job_id: document.id } },
    parseAs: "blob",
  });
  check(result.data, `the result, got ${result.response.status}`);
  const size = pngSize(new Uint8Array(await result.data.arrayBuffer()));
  return { status: document.status, location, size };
}

main().catch((failure: unknown) => {
  console.error(failure);
  process.exit(1);
});
