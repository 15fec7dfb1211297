// The prep gate's command line: what `pulumi up` runs (a command.local.Command) before it requests any GPU
// node. It watches exactly the keys that layout.ts names, passed as s3:// URIs, so the gate script never
// builds an S3 key itself.
import { datasetSuccessKey, runKeys, s3Uri, PREP_RUN } from "./layout";
import { shellQuote } from "./shell";

export interface GateSettings {
    readonly bucket: string;
    readonly prepHash: string;
    readonly campaign: string;
    /** prep.maxHours: the gate gives up when the prep cap has passed. */
    readonly maxHours: number;
    /** The prep node's instance: only its status counts (an earlier attempt's failure is ignored). */
    readonly instanceId?: string;
}

/** Minutes the gate waits past the prep cap: the prep node boots and pulls its image before the cap starts. */
export const GATE_BOOT_ALLOWANCE_SECONDS = 600;

/**
 * The gate's command: scripts/wait-for-prep.sh polls for datasets/<hash>/_SUCCESS, fails fast with the
 * prep's last log lines when its status says failed, and gives up at the prep cap plus the boot allowance.
 */
export function gateCommand(g: GateSettings): string {
    if (!/^[0-9a-f]{16}$/.test(g.prepHash)) throw new Error(`not a prep hash: ${g.prepHash}`);
    const prep = runKeys(g.campaign, PREP_RUN);
    const maxSeconds = Math.round(g.maxHours * 3600) + GATE_BOOT_ALLOWANCE_SECONDS;
    return [
        "bash scripts/wait-for-prep.sh",
        `--marker ${shellQuote(s3Uri(g.bucket, datasetSuccessKey(g.prepHash)))}`,
        `--status ${shellQuote(s3Uri(g.bucket, prep.status))}`,
        `--logs ${shellQuote(s3Uri(g.bucket, prep.logs))}`,
        `--max-seconds ${maxSeconds}`,
        ...(g.instanceId ? [`--instance-id ${shellQuote(g.instanceId)}`] : []),
    ].join(" ");
}
