// Names and tags shared by the campaign's components: pure functions, no resources.
import { createHash } from "node:crypto";

/** What a resource does for the campaign; the `role` tag. */
export type ResourceRole = "store" | "image" | "secrets" | "prep" | "gate" | "train" | "guardrails" | "logs" | "runner";

/** The `run` tag of resources shared by every run of a campaign (the bucket, the image, the secrets). */
export const SHARED_RUN = "shared";

export interface TagContext {
    readonly campaign: string;
    readonly stack: string;
}

/**
 * The tags every resource of a campaign carries: campaign, run, stack, role. `campaign` is the tag the
 * optional AWS Budget filters on (it must be activated as a cost-allocation tag in the billing console).
 */
export function campaignTags(ctx: TagContext, role: ResourceRole, run: string = SHARED_RUN): Record<string, string> {
    return { campaign: ctx.campaign, run, stack: ctx.stack, role };
}

/** Eight hex characters of sha256: stable short suffixes for names that must stay within AWS limits. */
export function shortDigest(value: string): string {
    return createHash("sha256").update(value).digest("hex").slice(0, 8);
}

/**
 * The bucket a new campaign gets: deterministic from campaign, stack and account, so the program knows
 * it before the bucket exists and can read the campaign's state from it at the start of `pulumi up`.
 * S3 names: 3-63 characters, lowercase letters, digits and '-'.
 */
export function campaignBucketName(campaign: string, stack: string, accountId: string): string {
    const slug = (s: string) =>
        s
            .toLowerCase()
            .replace(/[^a-z0-9-]+/g, "-")
            .replace(/-+/g, "-")
            .replace(/^-|-$/g, "");
    const account = slug(accountId);
    const full = [slug(campaign), slug(stack), account].filter(Boolean).join("-");
    if (full.length <= 63) return full;
    // Too long: keep the campaign's start, and a digest of the whole name keeps it unique.
    const digest = shortDigest(`${campaign}/${stack}/${accountId}`);
    const room = 63 - account.length - digest.length - 2;
    const head = slug(campaign).slice(0, room).replace(/-$/, "");
    return `${head}-${digest}-${account}`;
}

/** Prefix of the campaign's SSM parameters: /campaign/<campaign>/<stack>/. */
export function parameterPrefix(campaign: string, stack: string): string {
    return `/campaign/${campaign}/${stack}/`;
}
