// The program `pulumi up` runs, with its outside world injected: index.ts passes the S3 state reader and
// the user-data renderer (userData.renderNodeUserData); the tests pass a static state and the same
// renderer, and set the config.
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { bucketFor, Campaign, estimatedCost, logLinks, nextCommands, type CampaignCredentials } from "./campaign";
import { resolveCampaign } from "../campaign/resolve";
import type { ResolvedCampaign } from "../campaign/types";
import { readCampaignState, type CampaignStateReader } from "../campaign/state";
import type { UserDataRenderer } from "../node/userData";
import type { BucketProblem } from "../campaign/existingBucket";
import { bucketAdoption, type ObservedBucket } from "../campaign/bucketAdoption";
import { campaignTags } from "../campaign/naming";
import type { AssumeRoleSetting } from "../campaign/assumeRoles";
import { composeExperiment } from "../config/presets";

export interface ProgramDeps {
    /**
     * The state reader for a bucket (S3CampaignState in index.ts, a static one in tests), as the stack's identity:
     * aws:profile, and aws:assumeRoles assumed in order (components/campaign/assumeRoles.ts).
     */
    readonly stateReader: (bucket: string, campaign: string, region: string, profile?: string, assumeRoles?: readonly AssumeRoleSetting[]) => CampaignStateReader;
    readonly renderUserData: UserDataRenderer;
    /** Checks storage.existingBucket before anything is declared (checkExistingBucket in index.ts). Default: no check. */
    readonly bucketCheck?: (bucket: string, accountId: string, region: string, profile?: string, assumeRoles?: readonly AssumeRoleSetting[]) => Promise<BucketProblem[]>;
    /**
     * Looks at the campaign's own bucket name before anything is declared (observeCampaignBucket in index.ts), so a
     * bucket kept by an earlier `pulumi destroy` is adopted and one that is not ours stops `pulumi up`. Default: no
     * look (the bucket is created, as for a new stack).
     */
    readonly bucketObserver?: (bucket: string, accountId: string, region: string, profile?: string, assumeRoles?: readonly AssumeRoleSetting[]) => Promise<ObservedBucket>;
    /** The Campaign component's name. Default: the campaign's name. */
    readonly name?: string;
    /** Options for the Campaign component (the tests pass transformations). */
    readonly opts?: pulumi.ComponentResourceOptions;
}

/** The campaign from the stack's config: campaign:preset, campaign:experiment (overrides merged onto the preset). */
export function campaignFromConfig(config: pulumi.Config, stack: string): ResolvedCampaign {
    const preset = config.get("preset");
    const experiment = config.getObject<unknown>("experiment");
    return resolveCampaign(composeExperiment({ preset, experiment }), `Pulumi.${stack}.yaml`);
}

/** The stack's AWS credential settings (aws:profile, aws:assumeRoles), which an explicit provider does not inherit. */
export function credentialsFromConfig(config: pulumi.Config): CampaignCredentials {
    const profile = config.get("profile");
    const assumeRoles = config.getObject<aws.types.input.ProviderAssumeRole[]>("assumeRoles");
    return { ...(profile ? { profile } : {}), ...(assumeRoles?.length ? { assumeRoles } : {}) };
}

export async function program(deps: ProgramDeps): Promise<Record<string, unknown>> {
    const stack = pulumi.getStack();
    const config = new pulumi.Config("campaign");
    const campaign = campaignFromConfig(config, stack);
    for (const w of campaign.warnings) pulumi.log.warn(`${w.path}: ${w.message}`);
    const x = campaign.experiment;

    const identity = await aws.getCallerIdentity({});
    const bucket = bucketFor(campaign, stack, identity.accountId);
    // Read before declaring: a succeeded run is not declared again, a prepared dataset is reused.
    const credentials = credentialsFromConfig(new pulumi.Config("aws"));
    // aws:assumeRoles comes from the stack's config as plain JSON: the readers assume the same roles as the provider.
    const roles = credentials.assumeRoles as readonly AssumeRoleSetting[] | undefined;
    if (bucket.existing && deps.bucketCheck) {
        const problems = await deps.bucketCheck(bucket.name, identity.accountId, x.region, credentials.profile, roles);
        for (const p of problems.filter((p) => p.severity === "warning")) pulumi.log.warn(p.message);
        const errors = problems.filter((p) => p.severity === "error");
        if (errors.length > 0) throw new Error(errors.map((p) => p.message).join("\n"));
    }
    let adoptBucket = false;
    if (!bucket.existing && deps.bucketObserver) {
        const observed = await deps.bucketObserver(bucket.name, identity.accountId, x.region, credentials.profile, roles);
        const decision = bucketAdoption(bucket.name, observed, campaignTags({ campaign: x.name, stack }, "store"), identity.accountId, x.region);
        if (decision.action === "refuse") throw new Error(decision.message);
        adoptBucket = decision.action === "adopt";
        if (adoptBucket) pulumi.log.info(`the campaign's bucket ${bucket.name} exists and is this campaign's (kept by an earlier destroy, or already in this stack): declared with import, not created`);
    }
    const state = await readCampaignState(deps.stateReader(bucket.name, x.name, x.region, credentials.profile, roles), campaign);

    const c = new Campaign(
        deps.name ?? x.name,
        {
            campaign,
            stack,
            accountId: identity.accountId,
            state,
            hfToken: config.getSecret("hfToken"),
            wandbKey: config.getSecret("wandbKey"),
            renderUserData: deps.renderUserData,
            credentials,
            adoptBucket,
        },
        deps.opts,
    );

    const runNames = campaign.runs.map((r) => r.name);
    return {
        bucket: c.bucketName,
        prefixes: c.prefixes,
        nodes: c.nodes,
        finishedRuns: c.declared.finished,
        prep: c.declared.prep,
        estimatedCost: estimatedCost(campaign),
        afterDestroy: c.kept,
        logs: logLinks(x.region, c.bucketName, x.name, runNames),
        commands: nextCommands(stack, c.bucketName, x.name, runNames),
    };
}
