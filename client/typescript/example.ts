// A TypeScript caller of offload, typed by schema.d.ts: the types openapi-typescript generates from
// the app's /openapi.json (scripts/typescript-check writes both and runs `tsc --strict` over this).
// Every type below comes from the schema; a change to a job's input or to the job view that breaks
// a caller breaks this file first.
import type { components, operations } from "./schema";

export type JobView = components["schemas"]["JobView"];
export type WordCountInput = components["schemas"]["WordCountInput"];
type EnqueueWordCount = operations["enqueue_word_count"];
export type EnqueueOptions = NonNullable<EnqueueWordCount["parameters"]["query"]>;
type ReadJob = operations["read_job_jobs__job_id__get"];

const TERMINAL: ReadonlySet<string> = new Set(["finished", "failed", "stopped", "canceled"]);

export const full: WordCountInput = { text: "to be or not to be", top: 3 };
export const minimal: WordCountInput = { text: "a field with a default may be left out" };
export const options: EnqueueOptions = { queue: "high", retries: 2, depends_on: [], wait: 5 };

// The schema refuses what the server would: each line below must fail to type-check.
// @ts-expect-error: `text` is required
export const missingText: WordCountInput = { top: 3 };
// @ts-expect-error: `urgent` is not a queue
export const unknownQueue: EnqueueOptions = { queue: "urgent" };
// @ts-expect-error: `top` is a number
export const wrongType: WordCountInput = { text: "x", top: "3" };

export class Offload {
  constructor(
    private readonly baseUrl: string,
    private readonly apiKey: string,
  ) {}

  /** Enqueue word_count; the same Idempotency-Key on a retry returns the same job. */
  async wordCount(
    input: WordCountInput,
    query: EnqueueOptions = {},
    key: string = crypto.randomUUID(),
  ): Promise<JobView> {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(query)) {
      for (const item of Array.isArray(value) ? value : [value]) {
        if (item !== null && item !== undefined) params.append(name, String(item));
      }
    }
    const response = await fetch(`${this.baseUrl}/jobs/word_count?${params}`, {
      method: "POST",
      headers: { ...this.headers(), "Content-Type": "application/json", "Idempotency-Key": key },
      body: JSON.stringify(input),
    });
    const accepted: EnqueueWordCount["responses"][202]["content"]["application/json"] =
      await this.answer(response, 202);
    return accepted;
  }

  /** The job once it ended, or as it is after `wait` seconds. */
  async read(job: JobView, wait: number = 20): Promise<JobView> {
    const query: NonNullable<ReadJob["parameters"]["query"]> = { wait };
    const response = await fetch(`${this.baseUrl}/jobs/${job.id}?wait=${query.wait ?? 0}`, {
      headers: this.headers(),
    });
    const view: ReadJob["responses"][200]["content"]["application/json"] = await this.answer(response, 200);
    return view;
  }

  private headers(): Record<string, string> {
    return { Authorization: `Bearer ${this.apiKey}` };
  }

  private async answer<T>(response: Response, expected: number): Promise<T> {
    if (response.status !== expected) {
      const error: components["schemas"]["ErrorBody"] = await response.json();
      throw new Error(`${response.status}: ${JSON.stringify(error.detail)}`);
    }
    return (await response.json()) as T;
  }
}

export function describe(job: JobView): string {
  const progress = job.progress ? ` ${Math.round(job.progress.fraction * 100)}% ${job.progress.message ?? ""}` : "";
  const end = TERMINAL.has(job.status) ? (job.error ? ` (${job.error.type}: ${job.error.message})` : " (done)") : "";
  return `${job.name ?? job.id}: ${job.status}${progress}${end}`;
}
