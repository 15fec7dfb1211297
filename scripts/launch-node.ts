// The launch step of a GPU node with fallback (components/resources/jobNode.ts runs it as a local command):
//
//   npx tsx scripts/launch-node.ts create   # CAMPAIGN_LAUNCH (JSON, plan/fleetLaunch.ts LaunchRequest)
//   npx tsx scripts/launch-node.ts update   # PULUMI_COMMAND_STDOUT: the record, unchanged
//   npx tsx scripts/launch-node.ts delete   # PULUMI_COMMAND_STDOUT: the record of the instance to terminate
//
// create: an instance of this launch already running (a retried step whose answer was lost) is adopted; otherwise
// one EC2 Fleet request of type instant over the candidates in order. It prints the record (JSON) on stdout and
// exits 0 when an instance launched; when none did it deletes the empty fleet, prints every candidate with EC2's
// reason and what to do, and exits 1, so `pulumi up` stops there and the next one tries again.
// update: a living node never changes (new settings apply at its next launch), so the record is printed back.
// delete: terminates the instance, waits until EC2 reports it terminated (so a replacement never overlaps it, and
// `pulumi destroy` ends with no charge left), then deletes its fleet.
//
// Credentials as the gate's: AWS_PROFILE, then CAMPAIGN_ASSUME_ROLES; AWS_ENDPOINT_URL for a local endpoint.
// CAMPAIGN_LAUNCH_POLL (seconds between reads, default 5) and CAMPAIGN_LAUNCH_WAIT (seconds, default 900).
import {
    CreateFleetCommand,
    DeleteFleetsCommand,
    DescribeInstancesCommand,
    EC2Client,
    TerminateInstancesCommand,
    type CreateFleetCommandInput,
    type Instance,
} from "@aws-sdk/client-ec2";
import { isCredentialError, type AwsError } from "../components/campaign/awsErrors";
import { instanceState } from "../components/campaign/instanceState";
import { localCommandCredentials } from "../components/campaign/assumeRoles";
import { createFleetInput, fleetOutcome, LAUNCH_TAG, launchTagValue, parseLaunchRecord, type LaunchRecord, type LaunchRequest } from "../components/plan/fleetLaunch";

const say = (line: string) => process.stderr.write(`launch: ${line}\n`);

function client(region: string | undefined): EC2Client {
    const endpoint = process.env.AWS_ENDPOINT_URL;
    return new EC2Client({ ...localCommandCredentials(), ...(region ? { region } : {}), ...(endpoint ? { endpoint } : {}) });
}

function seconds(name: string, fallback: number): number {
    const raw = process.env[name];
    if (raw === undefined) return fallback;
    if (!/^\d+(\.\d+)?$/.test(raw)) throw new Error(`${name} must be a number of seconds, got '${raw}'`);
    return Number(raw);
}

const sleep = (s: number) => new Promise((resolve) => setTimeout(resolve, s * 1000));

export function parseRequest(raw: string | undefined): LaunchRequest {
    if (!raw) throw new Error("CAMPAIGN_LAUNCH is not set: it carries the launch request (JSON) the node's JobNode gives the step");
    const doc = JSON.parse(raw) as LaunchRequest;
    for (const field of ["node", "launchKey", "launchTemplateId", "launchTemplateVersion", "market"] as const) {
        if (typeof doc[field] !== "string" || doc[field] === "") throw new Error(`CAMPAIGN_LAUNCH.${field} must be a non-empty string`);
    }
    if (!Array.isArray(doc.candidates) || doc.candidates.length === 0) throw new Error("CAMPAIGN_LAUNCH.candidates must list at least one instance type and subnet");
    return doc;
}

/** What went wrong and what to do. `needs`: the permissions the refused request takes. */
function explain(err: unknown, doing: string, needs = "ec2:CreateFleet, ec2:RunInstances, ec2:CreateTags and iam:PassRole on the node's role"): string {
    const e = err as AwsError;
    // UnauthorizedOperation first: EC2 answers it with HTTP 403, which isCredentialError also counts, but it means
    // a missing permission, not refused or expired credentials.
    const hint =
        e?.name === "UnauthorizedOperation"
            ? ` The identity of this \`pulumi up\` needs ${needs}.`
            : isCredentialError(err)
              ? " The credentials of this `pulumi up` were refused or have expired: renew them (aws:profile / aws:assumeRoles) and run pulumi up again."
              : "";
    return `${doing}: ${e?.name ?? "error"}: ${(e?.message ?? String(err)).replace(/\.$/, "")}.${hint}`;
}

/** This launch's instance if one is pending or running (an earlier try of the same step launched it). */
async function findLaunched(ec2: EC2Client, request: LaunchRequest): Promise<Instance | undefined> {
    const out = await ec2.send(
        new DescribeInstancesCommand({
            Filters: [
                { Name: `tag:${LAUNCH_TAG}`, Values: [launchTagValue(request.node, request.launchKey)] },
                { Name: "instance-state-name", Values: ["pending", "running"] },
            ],
        }),
    );
    return out.Reservations?.flatMap((r) => r.Instances ?? [])[0];
}

async function deleteFleet(ec2: EC2Client, fleetId: string): Promise<void> {
    try {
        const out = await ec2.send(new DeleteFleetsCommand({ FleetIds: [fleetId], TerminateInstances: true }));
        for (const e of out.UnsuccessfulFleetDeletions ?? []) {
            if (e.Error?.Code !== "fleetIdDoesNotExist") say(`warning: fleet ${fleetId} was not deleted: ${e.Error?.Code}: ${e.Error?.Message} (an instant fleet costs nothing)`);
        }
    } catch (err) {
        say(`warning: ${explain(err, `deleting fleet ${fleetId}`)} (an instant fleet costs nothing; its instance is handled separately)`);
    }
}

async function create(): Promise<number> {
    const request = parseRequest(process.env.CAMPAIGN_LAUNCH);
    const ec2 = client(request.region);
    let found: Instance | undefined;
    try {
        found = await findLaunched(ec2, request);
    } catch (err) {
        // The lookup is the step's first request: refused credentials show here, before any launch.
        say(explain(err, `${request.node}: looking for an instance of this launch (DescribeInstances)`, "ec2:DescribeInstances"));
        return 1;
    }
    if (found?.InstanceId) {
        const candidate = request.candidates.find((c) => c.subnetId === found.SubnetId && c.instanceType === found.InstanceType);
        const record: LaunchRecord = {
            instanceId: found.InstanceId,
            instanceType: found.InstanceType ?? candidate?.instanceType ?? "unknown",
            zone: found.Placement?.AvailabilityZone ?? candidate?.zone ?? "unknown",
            subnetId: found.SubnetId ?? candidate?.subnetId ?? "unknown",
            launchKey: request.launchKey,
            skipped: [],
        };
        say(`${request.node}: ${found.InstanceId} of this launch is already ${found.State?.Name ?? "running"}; adopted, nothing launched`);
        process.stdout.write(JSON.stringify(record));
        return 0;
    }
    let answer;
    try {
        answer = await ec2.send(new CreateFleetCommand(createFleetInput(request) as CreateFleetCommandInput));
    } catch (err) {
        say(explain(err, `${request.node}: CreateFleet`));
        return 1;
    }
    const outcome = fleetOutcome(request, answer);
    if (!outcome.launched) {
        if (answer.FleetId) await deleteFleet(ec2, answer.FleetId);
        say(outcome.message);
        return 1;
    }
    if (outcome.extra.length) {
        say(`${request.node}: EC2 launched ${outcome.extra.length} instance(s) beyond the one asked for; terminating ${outcome.extra.join(", ")}`);
        await ec2.send(new TerminateInstancesCommand({ InstanceIds: [...outcome.extra] }));
    }
    const r = outcome.record;
    for (const line of r.skipped) say(`${request.node}: skipped ${line}`);
    say(`${request.node}: launched ${r.instanceId}, ${r.instanceType} in ${r.zone}${r.instanceType !== request.candidates[0]!.instanceType || r.zone !== request.candidates[0]!.zone ? ` (not the first choice, ${request.candidates[0]!.instanceType} in ${request.candidates[0]!.zone})` : ""}`);
    process.stdout.write(JSON.stringify(r));
    return 0;
}

function recordFromEnv(): LaunchRecord {
    const parsed = parseLaunchRecord(process.env.PULUMI_COMMAND_STDOUT);
    if ("problem" in parsed) {
        throw new Error(
            `${parsed.problem}. Nothing was terminated: find the node's instance by its tag ${LAUNCH_TAG} in the EC2 console and terminate it, ` +
                "then remove this step from the stack (pulumi state delete <its urn>)",
        );
    }
    return parsed.record;
}

async function remove(): Promise<number> {
    const record = recordFromEnv();
    const ec2 = client(process.env.AWS_REGION);
    try {
        await ec2.send(new TerminateInstancesCommand({ InstanceIds: [record.instanceId] }));
    } catch (err) {
        if ((err as AwsError).name !== "InvalidInstanceID.NotFound") {
            say(explain(err, `terminating ${record.instanceId}`, "ec2:TerminateInstances"));
            return 1;
        }
    }
    const poll = seconds("CAMPAIGN_LAUNCH_POLL", 5);
    const deadline = Date.now() + seconds("CAMPAIGN_LAUNCH_WAIT", 900) * 1000;
    for (;;) {
        let state: string | undefined;
        try {
            state = await instanceState(ec2, record.instanceId);
        } catch (err) {
            say(`${explain(err, `reading the state of ${record.instanceId}`, "ec2:DescribeInstances")} It was asked to terminate; run pulumi up (or destroy) again`);
            return 1;
        }
        if (state === undefined || state === "terminated") break;
        if (Date.now() > deadline) {
            say(`${record.instanceId} is still ${state}; it was asked to terminate. Run pulumi up (or destroy) again once EC2 shows it terminated`);
            return 1;
        }
        say(`${record.instanceId}: ${state}, waiting for terminated`);
        await sleep(poll);
    }
    say(`${record.instanceId} terminated`);
    if (record.fleetId) await deleteFleet(ec2, record.fleetId);
    return 0;
}

function update(): number {
    process.stdout.write(JSON.stringify(recordFromEnv()));
    return 0;
}

async function main(argv: readonly string[]): Promise<number> {
    switch (argv[0]) {
        case "create":
            return create();
        case "update":
            return update();
        case "delete":
            return remove();
        default:
            process.stderr.write("usage: launch-node.ts create|update|delete (see the comment at its top)\n");
            return 2;
    }
}

if (require.main === module) {
    main(process.argv.slice(2)).then(
        (code) => process.exit(code),
        (err: unknown) => {
            say((err as Error).message ?? String(err));
            process.exit(1);
        },
    );
}
