// The regional image build (images.buildOn: region): the build machine the stack declares and what a build
// costs and takes, for the plan. Pure: numbers and their sources only.
import type { Experiment } from "../config/schema";

export type BuildJob = "trainer" | "prep";

/**
 * CodeBuild on-demand, Linux container, BUILD_GENERAL1_MEDIUM: 4 vCPUs, 8 GiB (ProjectEnvironment.computeType,
 * https://docs.aws.amazon.com/codebuild/latest/APIReference/API_ProjectEnvironment.html). The build is network
 * and disk work (pulling ~10 GB of compressed NVIDIA layers, unpacking ~20 GB, pushing them to ECR), not CPU
 * work, so a larger type mostly costs more.
 */
export const IMAGE_BUILD_COMPUTE_TYPE = "BUILD_GENERAL1_MEDIUM";
/** The managed build image with Docker and the AWS CLI v2 (privileged mode runs its Docker daemon). */
export const IMAGE_BUILD_IMAGE = "aws/codebuild/amazonlinux2-x86_64-standard:5.0";
/** us-east-1 list price of general1.medium Linux per build minute (https://aws.amazon.com/codebuild/pricing/). */
export const IMAGE_BUILD_USD_PER_MINUTE = 0.01;

/** Minutes a first build is expected to take, and the build's timeout (the worst case billed). */
export const IMAGE_BUILD_MINUTES: Readonly<Record<BuildJob, { readonly expected: number; readonly timeout: number }>> = {
    // Pull and unpack nvcr.io/nvidia/pytorch (~10 GB compressed), pip install, push every layer (ECR holds none yet).
    trainer: { expected: 30, timeout: 90 },
    // python:3.11-slim plus prep's requirements: a few hundred MB.
    prep: { expected: 6, timeout: 30 },
};

export interface ImageBuildPlan {
    readonly buildOn: "region" | "local";
    /** The images this campaign builds (none given in images.* or customJob.image). */
    readonly jobs: readonly BuildJob[];
    readonly computeType: string;
    readonly usdPerMinute: number;
    /** Expected minutes of the slowest build (they run in parallel, the trainer's beside prep). */
    readonly estimatedMinutes: number;
    /** Dollars when every image is built; $0 when the content tags exist in ECR (nothing is rebuilt). */
    readonly estimatedUsd: number;
    readonly worstCaseUsd: number;
    readonly assumptions: readonly string[];
}

/** The images a campaign builds: the trainer unless given, prep when it runs on a node and is not given. */
export function imagesToBuild(experiment: Experiment): BuildJob[] {
    const jobs: BuildJob[] = [];
    if (!experiment.images.trainer && !experiment.customJob) jobs.push("trainer");
    if (experiment.prep.runOn === "ec2" && !experiment.images.prep) jobs.push("prep");
    return jobs;
}

export function imageBuildPlan(experiment: Experiment): ImageBuildPlan {
    const jobs = imagesToBuild(experiment);
    const buildOn = experiment.images.buildOn;
    const regional = buildOn === "region" && jobs.length > 0;
    const minutes = jobs.map((job) => IMAGE_BUILD_MINUTES[job]);
    return {
        buildOn,
        jobs,
        computeType: IMAGE_BUILD_COMPUTE_TYPE,
        usdPerMinute: IMAGE_BUILD_USD_PER_MINUTE,
        estimatedMinutes: Math.max(0, ...minutes.map((m) => m.expected)),
        estimatedUsd: regional ? minutes.reduce((sum, m) => sum + m.expected * IMAGE_BUILD_USD_PER_MINUTE, 0) : 0,
        worstCaseUsd: regional ? minutes.reduce((sum, m) => sum + m.timeout * IMAGE_BUILD_USD_PER_MINUTE, 0) : 0,
        assumptions: regional
            ? [
                  `image build: CodeBuild ${IMAGE_BUILD_COMPUTE_TYPE} at $${IMAGE_BUILD_USD_PER_MINUTE}/min, ${jobs.map((j) => `${j} about ${IMAGE_BUILD_MINUTES[j].expected} min (timeout ${IMAGE_BUILD_MINUTES[j].timeout})`).join(", ")}; an image whose content tag is already in ECR is not rebuilt ($0)`,
              ]
            : [],
    };
}
