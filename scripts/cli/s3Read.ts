// Reading a campaign's objects from S3 for the CLI and the rehearsal: one text read, one status read.
import { GetObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { status as statusSchema, type Status } from "../../components/campaign/jobSpec";
import { runKeys } from "../../components/campaign/layout";

/** The object's text, or undefined when there is no such key. */
export async function readText(client: S3Client, bucket: string, key: string): Promise<string | undefined> {
    try {
        const out = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
        return await out.Body?.transformToString("utf-8");
    } catch (err) {
        const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
        if (e.name === "NoSuchKey" || e.$metadata?.httpStatusCode === 404) return undefined;
        throw err;
    }
}

/** A job's status.json: null when there is none yet; with a note when it exists but cannot be read. */
export async function readStatus(client: S3Client, bucket: string, campaign: string, run: string): Promise<{ status: Status | null; note?: string }> {
    const body = await readText(client, bucket, runKeys(campaign, run).status);
    if (body === undefined) return { status: null };
    let json: unknown;
    try {
        json = JSON.parse(body);
    } catch {
        return { status: null, note: "status.json is not valid JSON" };
    }
    const parsed = statusSchema.safeParse(json);
    return parsed.success ? { status: parsed.data } : { status: null, note: "status.json does not follow its schema" };
}
