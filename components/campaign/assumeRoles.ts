// The stack's aws:assumeRoles for the campaign's own AWS readers (the state reader and the bucket look at
// `pulumi up`, the gate and the image step that `pulumi up` runs here), so they act as the same identity as the
// resources. The semantics are the Pulumi AWS provider's (it authenticates through hashicorp/aws-sdk-go-base,
// credentials.go, assumeRoleCredentialsProvider): the roles are assumed in the order given, each with the
// credentials of the one before (the first with the base credentials: aws:profile or the environment); a role
// without roleArn is an error; sessionName, externalId, duration, policy, policyArns, sourceIdentity, tags and
// transitiveTagKeys go to STS AssumeRole as given, and an unset duration is 15 minutes (the AWS SDK for Go's
// stscreds.DefaultDuration). Sessions are assumed again shortly before they expire, so a gate that waits hours
// keeps reading. https://github.com/hashicorp/aws-sdk-go-base/blob/main/credentials.go
import { AssumeRoleCommand, STSClient, type AssumeRoleCommandInput, type STSClientConfig } from "@aws-sdk/client-sts";

/** What an AWS SDK client takes as `credentials` (a fixed identity or a provider), from the STS client's own config type. */
type CredentialsSetting = NonNullable<STSClientConfig["credentials"]>;
/** A provider of credentials, as the SDK clients take it. */
export type AwsCredentialIdentityProvider = Extract<CredentialsSetting, (...args: never[]) => unknown>;
/** One set of (temporary) credentials. */
export type AwsCredentialIdentity = Exclude<CredentialsSetting, (...args: never[]) => unknown>;

/** One entry of aws:assumeRoles, as the provider's ProviderAssumeRole names its fields. */
export interface AssumeRoleSetting {
    readonly roleArn?: string;
    readonly sessionName?: string;
    readonly externalId?: string;
    /** A Go duration ("1h", "15m", "1h30m", "900s"): the provider's format. */
    readonly duration?: string;
    readonly policy?: string;
    readonly policyArns?: readonly string[];
    readonly sourceIdentity?: string;
    readonly tags?: Readonly<Record<string, string>>;
    readonly transitiveTagKeys?: readonly string[];
}

/** The environment variable that hands aws:assumeRoles (JSON) to the campaign's local commands (the gate, the image step). */
export const ASSUME_ROLES_ENV = "CAMPAIGN_ASSUME_ROLES";

/** Session length when a role names no duration: stscreds.DefaultDuration of the AWS SDK for Go, which the provider uses. */
export const DEFAULT_SESSION_SECONDS = 15 * 60;

const GO_DURATION_UNITS: Readonly<Record<string, number>> = { ns: 1e-9, us: 1e-6, "µs": 1e-6, ms: 1e-3, s: 1, m: 60, h: 3600 };

/** Seconds in a Go duration string ("1h30m", "900s", "15m"); throws naming the value when it is not one. */
export function goDurationSeconds(value: string, field: string): number {
    const parts = /^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+$/.test(value) ? value.match(/\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h)/g) ?? [] : [];
    if (parts.length === 0) throw new Error(`${field}: got "${value}"; expected a duration such as "1h", "15m" or "1h30m" (units ns, us, ms, s, m, h)`);
    let seconds = 0;
    for (const part of parts) {
        const [, amount, unit] = /^(\d+(?:\.\d+)?)(\D+)$/.exec(part)!;
        seconds += Number(amount) * GO_DURATION_UNITS[unit!]!;
    }
    return Math.floor(seconds);
}

/**
 * The AssumeRole requests for aws:assumeRoles, in order. `now` names sessions that have no sessionName (the Go SDK
 * names them aws-go-sdk-<nanoseconds>; these are campaign-<milliseconds>). Throws naming the entry and the field.
 */
export function assumeRoleRequests(roles: readonly AssumeRoleSetting[], now: () => number = Date.now): AssumeRoleCommandInput[] {
    return roles.map((role, i) => {
        const at = `aws:assumeRoles[${i}]`;
        if (!role.roleArn) throw new Error(`${at}.roleArn is not set (assume role ${i + 1} of ${roles.length}): every entry names the role to assume`);
        const seconds = role.duration === undefined ? DEFAULT_SESSION_SECONDS : goDurationSeconds(role.duration, `${at}.duration`);
        if (seconds < 900 || seconds > 43200) throw new Error(`${at}.duration: ${role.duration} is ${seconds} s; STS allows 15 minutes to 12 hours`);
        return {
            RoleArn: role.roleArn,
            RoleSessionName: role.sessionName || `campaign-${now()}`,
            DurationSeconds: seconds,
            ...(role.externalId ? { ExternalId: role.externalId } : {}),
            ...(role.policy ? { Policy: role.policy } : {}),
            ...(role.policyArns?.length ? { PolicyArns: role.policyArns.map((arn) => ({ arn })) } : {}),
            ...(role.sourceIdentity ? { SourceIdentity: role.sourceIdentity } : {}),
            ...(role.tags && Object.keys(role.tags).length ? { Tags: Object.entries(role.tags).map(([Key, Value]) => ({ Key, Value })) } : {}),
            ...(role.transitiveTagKeys?.length ? { TransitiveTagKeys: [...role.transitiveTagKeys] } : {}),
        };
    });
}

/** aws:assumeRoles from CAMPAIGN_ASSUME_ROLES (JSON), undefined when it is unset or empty. */
export function assumeRolesFromEnv(env: NodeJS.ProcessEnv = process.env): AssumeRoleSetting[] | undefined {
    const text = env[ASSUME_ROLES_ENV];
    if (!text) return undefined;
    let roles: unknown;
    try {
        roles = JSON.parse(text);
    } catch (err) {
        throw new Error(`${ASSUME_ROLES_ENV} is not JSON: ${(err as Error).message}`);
    }
    if (!Array.isArray(roles)) throw new Error(`${ASSUME_ROLES_ENV} must be a JSON list of roles (aws:assumeRoles), got ${typeof roles}`);
    return roles.length > 0 ? (roles as AssumeRoleSetting[]) : undefined;
}

/** Where the chain's first STS call gets its credentials and endpoint: the stack's profile, the region. */
export interface BaseAccess {
    readonly region: string;
    readonly profile?: string;
    /** An explicit base identity (the tests); default: the SDK's chain with `profile`. */
    readonly credentials?: AwsCredentialIdentity | AwsCredentialIdentityProvider;
    /** An STS endpoint (the tests' emulator); default: the SDK's (it honours AWS_ENDPOINT_URL). */
    readonly endpoint?: string;
}

/** Reassumed this long before a session expires. */
const REFRESH_MARGIN_MS = 5 * 60 * 1000;

/**
 * A credentials provider that assumes `roles` in order from `base`, for any AWS SDK client's `credentials`.
 * It caches the last session and assumes the chain again when it is within five minutes of its expiry.
 */
export function assumeRoleChain(roles: readonly AssumeRoleSetting[], base: BaseAccess): AwsCredentialIdentityProvider {
    const requests = () => assumeRoleRequests(roles);
    requests(); // a bad setting fails here, before any client is made
    let cached: AwsCredentialIdentity | undefined;
    return async () => {
        if (cached?.expiration && cached.expiration.getTime() - Date.now() > REFRESH_MARGIN_MS) return cached;
        let current: AwsCredentialIdentity | AwsCredentialIdentityProvider | undefined = base.credentials;
        for (const [i, request] of requests().entries()) {
            const config: STSClientConfig = {
                region: base.region,
                ...(base.endpoint ? { endpoint: base.endpoint } : {}),
                ...(current ? { credentials: current } : base.profile ? { profile: base.profile } : {}),
            };
            let out;
            try {
                out = await new STSClient(config).send(new AssumeRoleCommand(request));
            } catch (err) {
                const e = err as { name?: string; message?: string };
                throw Object.assign(new Error(`assuming aws:assumeRoles[${i}] ${request.RoleArn} failed: ${e.name ?? "error"}: ${e.message ?? String(err)}`), { name: e.name ?? "AssumeRoleFailed", cause: err });
            }
            const c = out.Credentials;
            if (!c?.AccessKeyId || !c.SecretAccessKey) throw new Error(`assuming aws:assumeRoles[${i}] ${request.RoleArn}: STS returned no credentials`);
            current = { accessKeyId: c.AccessKeyId, secretAccessKey: c.SecretAccessKey, ...(c.SessionToken ? { sessionToken: c.SessionToken } : {}), ...(c.Expiration ? { expiration: c.Expiration } : {}) };
        }
        cached = current as AwsCredentialIdentity;
        return cached;
    };
}

/** The client settings for the stack's identity: the assumed chain when aws:assumeRoles is set, else the profile. */
export function clientCredentials(access: { readonly region: string; readonly profile?: string; readonly assumeRoles?: readonly AssumeRoleSetting[] }): { profile?: string; credentials?: AwsCredentialIdentityProvider } {
    if (access.assumeRoles?.length) return { credentials: assumeRoleChain(access.assumeRoles, { region: access.region, ...(access.profile ? { profile: access.profile } : {}) }) };
    return access.profile ? { profile: access.profile } : {};
}

/**
 * The `credentials` of the clients in the campaign's local commands (scripts/gate.ts, scripts/image-build.ts): the
 * chain from CAMPAIGN_ASSUME_ROLES when it is set, starting from the SDK's own chain (AWS_PROFILE); {} otherwise.
 */
export function localCommandCredentials(env: NodeJS.ProcessEnv = process.env): { credentials?: AwsCredentialIdentityProvider } {
    const roles = assumeRolesFromEnv(env);
    if (!roles) return {};
    const region = env.AWS_REGION ?? env.AWS_DEFAULT_REGION;
    if (!region) throw new Error(`${ASSUME_ROLES_ENV} is set but AWS_REGION is not: the roles are assumed in the campaign's region`);
    return { credentials: assumeRoleChain(roles, { region, ...(env.AWS_PROFILE ? { profile: env.AWS_PROFILE } : {}) }) };
}
