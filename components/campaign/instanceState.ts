// One instance's EC2 state, as the gate (the prep node), the launch step's delete and the state reader (a node
// without a final status) read it.
import { DescribeInstancesCommand, type EC2Client } from "@aws-sdk/client-ec2";
import type { AwsError } from "./awsErrors";

/**
 * The instance's state name (pending, running, shutting-down, terminated, ...); undefined when EC2 does not know the
 * id: not yet (DescribeInstances is eventually consistent and may answer InvalidInstanceID.NotFound right after a
 * launch: https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html) or no longer (a terminated
 * instance stays visible for about an hour). Any other error is thrown.
 */
export async function instanceState(ec2: EC2Client, instanceId: string): Promise<string | undefined> {
    try {
        const out = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }));
        return out.Reservations?.[0]?.Instances?.[0]?.State?.Name;
    } catch (err) {
        if ((err as AwsError).name === "InvalidInstanceID.NotFound") return undefined;
        throw err;
    }
}
