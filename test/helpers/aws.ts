// Reading and writing the emulator's S3 and SSM from tests and the rehearsal.
import { CreateBucketCommand, DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { fakeAwsEnv } from "../../scripts/local/moto";

export function s3Client(endpoint: string): S3Client {
    return new S3Client({
        endpoint,
        region: fakeAwsEnv.AWS_REGION,
        forcePathStyle: true,
        credentials: { accessKeyId: fakeAwsEnv.AWS_ACCESS_KEY_ID, secretAccessKey: fakeAwsEnv.AWS_SECRET_ACCESS_KEY },
    });
}

/** s3://bucket/key -> { bucket, key } */
export function parseS3Uri(uri: string): { bucket: string; key: string } {
    const m = /^s3:\/\/([^/]+)\/?(.*)$/.exec(uri);
    if (!m) throw new Error(`not an s3:// URI: ${uri}`);
    return { bucket: m[1]!, key: m[2]! };
}

export class S3Helper {
    constructor(readonly client: S3Client) {}

    static forEndpoint(endpoint: string): S3Helper {
        return new S3Helper(s3Client(endpoint));
    }

    async createBucket(bucket: string): Promise<void> {
        await this.client.send(new CreateBucketCommand({ Bucket: bucket }));
    }

    async put(uri: string, body: string | Uint8Array): Promise<void> {
        const { bucket, key } = parseS3Uri(uri);
        await this.client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
    }

    /** The object's text, or undefined when there is none. */
    async getText(uri: string): Promise<string | undefined> {
        const { bucket, key } = parseS3Uri(uri);
        try {
            const res = await this.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
            return await res.Body!.transformToString();
        } catch (e) {
            if ((e as { name?: string }).name === "NoSuchKey") return undefined;
            throw e;
        }
    }

    async getJson<T = unknown>(uri: string): Promise<T | undefined> {
        const text = await this.getText(uri);
        return text === undefined ? undefined : (JSON.parse(text) as T);
    }

    /** Keys under a prefix URI, relative to it, sorted. */
    async list(prefixUri: string): Promise<string[]> {
        const { bucket, key: prefix } = parseS3Uri(prefixUri);
        const keys: string[] = [];
        let token: string | undefined;
        do {
            const res = await this.client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
            for (const o of res.Contents ?? []) keys.push(o.Key!.slice(prefix.length));
            token = res.IsTruncated ? res.NextContinuationToken : undefined;
        } while (token);
        return keys.sort();
    }

    async delete(uri: string): Promise<void> {
        const { bucket, key } = parseS3Uri(uri);
        await this.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
    }
}

/** Stores an SSM SecureString parameter in the emulator (its JSON API; no SSM SDK client needed). */
export async function putSecureParameter(endpoint: string, name: string, value: string): Promise<void> {
    const region = fakeAwsEnv.AWS_REGION;
    const res = await fetch(endpoint, {
        method: "POST",
        headers: {
            "content-type": "application/x-amz-json-1.1",
            "x-amz-target": "AmazonSSM.PutParameter",
            authorization: `AWS4-HMAC-SHA256 Credential=${fakeAwsEnv.AWS_ACCESS_KEY_ID}/20250101/${region}/ssm/aws4_request, SignedHeaders=host, Signature=0`,
        },
        body: JSON.stringify({ Name: name, Value: value, Type: "SecureString", Overwrite: true }),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`PutParameter ${name} failed: ${res.status} ${text}`);
}
