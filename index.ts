// The program `pulumi up` runs: config -> campaign -> state read from S3 -> resources -> outputs.
// Everything is in components/resources/program.ts; here are only the outside world's pieces: the S3 state
// reader (which asks EC2 whether a node without a final status is gone), the existing-bucket check, the look at the campaign's own bucket (adopted when a destroy kept it), and
// the node user-data renderer (components/node/userData.ts: #cloud-config that fetches the runner the Campaign
// uploads to the bucket and checks its sha256).
import { S3Client } from "@aws-sdk/client-s3";
import { EC2Client } from "@aws-sdk/client-ec2";
import { checkExistingBucket } from "./components/campaign/existingBucket";
import { observeCampaignBucket } from "./components/campaign/bucketAdoption";
import { clientCredentials, type AssumeRoleSetting } from "./components/campaign/assumeRoles";
import { S3CampaignState } from "./components/campaign/state";
import { program } from "./components/resources/program";
import { renderNodeUserData } from "./components/node/userData";

/** An S3 client as the stack's identity: aws:profile, then aws:assumeRoles assumed in order. */
const s3 = (region: string, profile?: string, assumeRoles?: readonly AssumeRoleSetting[]) => new S3Client({ region, ...clientCredentials({ region, profile, assumeRoles }) });
/** An EC2 client as the same identity: the state reader asks it whether a node without a final status is gone. */
const ec2 = (region: string, profile?: string, assumeRoles?: readonly AssumeRoleSetting[]) => new EC2Client({ region, ...clientCredentials({ region, profile, assumeRoles }) });

export = program({
    stateReader: (bucket, campaign, region, profile, assumeRoles) => new S3CampaignState(s3(region, profile, assumeRoles), bucket, campaign, ec2(region, profile, assumeRoles)),
    renderUserData: renderNodeUserData,
    bucketCheck: (bucket, accountId, region, profile, assumeRoles) => checkExistingBucket(s3(region, profile, assumeRoles), bucket, accountId, region),
    bucketObserver: (bucket, accountId, region, profile, assumeRoles) => observeCampaignBucket(s3(region, profile, assumeRoles), bucket, accountId),
});
