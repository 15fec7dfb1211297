// The S3 layout of a campaign: the one place that names keys. The program, the node runner's settings
// and the rehearsal all derive their keys from here.
//
//   inputs/<sha256>/<file>                 a local data file uploaded for an EC2 prep node
//   datasets/<prep-hash>/...               prepared data + manifest.json + _SUCCESS (content-addressed: reused)
//   models/<model>/<revision>/...          base weights staged by prep
//   runs/<campaign>/prep/...               the prep job's spec.json, status.json and logs/
//   runs/<campaign>/<run>/spec.json        the job spec the program rendered
//   runs/<campaign>/<run>/status.json      phase, step/total, loss, tokens/s, ETA, updatedAt, exit code
//   runs/<campaign>/<run>/checkpoints/...  synced while training; the newest complete one is restored at start
//   runs/<campaign>/<run>/output/...       final adapter or model, metrics.json, eval.json, predictions.jsonl
//   runs/<campaign>/<run>/output/baseline/ eval.json + predictions.jsonl of the base model, in the run that
//                                          computes it (components/campaign/baseline.ts)
//   runs/<campaign>/<run>/logs/...
//   runs/<campaign>/<run>/metrics/<attempt>.jsonl        the training history of one node (attempt), uploaded whole
//   runs/<campaign>/<run>/metrics/<attempt>.status.json  that attempt's final status (components/report/ merges them)
//   runs/<campaign>/<run>/control.json     a graceful stop or restart of this run (`campaign stop --run R`)
//   runs/<campaign>/control.json           the same for every run and the prep job (`campaign stop`, `campaign down`)
//   runs/<campaign>/image/<tag>/context.tar.gz  the regional image build's context (images.buildOn: region)
//   runs/<campaign>/image/logs/...              the image builds' logs
import { evaluationFiles, markers } from "./contract";

/** The prep job's place under runs/<campaign>/; no training run may take this name. */
export const PREP_RUN = "prep";

/** Where the node runner script is uploaded under runs/<campaign>/; no training run may take this name either. */
export const RUNNER_FOLDER = "runner";

/** Where the regional image build reads its context and writes its logs under runs/<campaign>/; no run may take it. */
export const IMAGE_FOLDER = "image";

/** Run names that would collide with the campaign's own folders. */
export const RESERVED_RUN_NAMES: readonly string[] = [PREP_RUN, RUNNER_FOLDER, IMAGE_FOLDER];

/** The node runner, content-addressed by its sha256, so a node fetches exactly the script it was rendered for. */
export function runnerKey(campaign: string, sha256: string): string {
    return `${campaignPrefix(campaign)}${RUNNER_FOLDER}/run-job-${sha256.slice(0, 16)}.sh`;
}

/** The folder of one image build's context (its tag is content-addressed, so an unchanged image reuses it). */
export function imageBuildPrefix(campaign: string, tag: string): string {
    if (!/^[a-z0-9][a-z0-9._-]*$/.test(tag)) throw new Error(`not an image tag: ${tag}`);
    return `${campaignPrefix(campaign)}${IMAGE_FOLDER}/${tag}/`;
}

/** The build context of the regional image build: the files the Dockerfile copies, as a gzipped tar. */
export function imageContextKey(campaign: string, tag: string): string {
    return `${imageBuildPrefix(campaign, tag)}context.tar.gz`;
}

/** Where the image builds write their logs (the build service's S3 logs). */
export function imageLogsPrefix(campaign: string): string {
    return `${campaignPrefix(campaign)}${IMAGE_FOLDER}/logs/`;
}

/** Written last into a prepared dataset; its presence means the whole dataset is there. */
export const SUCCESS_MARKER = markers.datasetComplete;

/** Written last into a checkpoint directory; a checkpoint without it is partial and never restored. */
export const CHECKPOINT_MARKER = markers.checkpointComplete;

export function datasetPrefix(prepHash: string): string {
    return `datasets/${prepHash}/`;
}

export function datasetSuccessKey(prepHash: string): string {
    return `${datasetPrefix(prepHash)}${SUCCESS_MARKER}`;
}

export function modelPrefix(modelId: string, revision: string): string {
    return `models/${modelId}/${revision}/`;
}

export function inputKey(sha256: string, fileName: string): string {
    return `inputs/${sha256}/${fileName}`;
}

export function campaignPrefix(campaign: string): string {
    return `runs/${campaign}/`;
}

/** The control object's file name: in a run's folder for that run, in the campaign's folder for all of them. */
export const CONTROL_FILE = "control.json";

/** The campaign-wide control object (contract.ts, controlRequest): every node of the campaign polls it. */
export function campaignControlKey(campaign: string): string {
    return `${campaignPrefix(campaign)}${CONTROL_FILE}`;
}

export interface RunKeys {
    readonly prefix: string;
    readonly spec: string;
    readonly status: string;
    readonly checkpoints: string;
    readonly output: string;
    readonly logs: string;
    /** Each attempt's training history and final status (metricsHistory.ts): <attempt>.jsonl, <attempt>.status.json. */
    readonly metrics: string;
    /** This run's control object (contract.ts, controlRequest): its node polls it beside campaignControlKey. */
    readonly control: string;
}

/** Keys of one job of a campaign: a training run, or the prep job (run = PREP_RUN). */
export function runKeys(campaign: string, run: string): RunKeys {
    const prefix = `${campaignPrefix(campaign)}${run}/`;
    return {
        prefix,
        spec: `${prefix}spec.json`,
        status: `${prefix}status.json`,
        checkpoints: `${prefix}checkpoints/`,
        output: `${prefix}output/`,
        logs: `${prefix}logs/`,
        metrics: `${prefix}metrics/`,
        control: `${prefix}${CONTROL_FILE}`,
    };
}

export function s3Uri(bucket: string, key: string): string {
    return `s3://${bucket}/${key}`;
}

/** Which prefixes of the bucket a campaign's nodes may touch (IAM is scoped to these). */
export function campaignPrefixes(campaign: string): { readWrite: string[]; read: string[] } {
    return {
        readWrite: [campaignPrefix(campaign), "datasets/", "models/"],
        read: ["inputs/"],
    };
}

export interface EvaluationKeys {
    /** The run's eval.json and predictions.jsonl. */
    readonly metrics: string;
    readonly predictions: string;
}

/** A run's evaluation files, written by its trainer into output/. */
export function evaluationKeys(campaign: string, run: string): EvaluationKeys {
    const output = runKeys(campaign, run).output;
    return { metrics: `${output}${evaluationFiles.metrics}`, predictions: `${output}${evaluationFiles.predictions}` };
}

/** A base model's evaluation files, in the output of the run that computes them (components/campaign/baseline.ts). */
export function baselineEvaluationKeys(campaign: string, ownerRun: string): EvaluationKeys {
    const dir = `${runKeys(campaign, ownerRun).output}${evaluationFiles.baselineDir}/`;
    return { metrics: `${dir}${evaluationFiles.metrics}`, predictions: `${dir}${evaluationFiles.predictions}` };
}
