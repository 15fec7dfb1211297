// The instance catalog: the one table of EC2 facts the plan, the checks and the components read.
// Every number says where it came from and when. Prices are us-east-1 on-demand Linux; other regions differ.
import { unknownNameMessage } from "../config/suggest";

// ---------------------------------------------------------------- sources

/** On-demand prices: aws/karpenter-provider-aws pkg/providers/pricing/zz_generated.pricing_aws.go. */
export const PRICE_SOURCE_GPU =
    "aws/karpenter-provider-aws pkg/providers/pricing/zz_generated.pricing_aws.go (generated 2026-07-20T13:44:30Z for us-east-1; " +
    "same values in the 2026-02-09T13:43:35Z generation and in skypilot-org/skypilot-catalog catalogs/v8/aws/vms.csv)";
export const PRICE_SOURCE_CPU =
    "aws/karpenter-provider-aws pkg/providers/pricing/zz_generated.pricing_aws.go (generated 2026-02-09T13:43:35Z for us-east-1, commit 265ee0b)";
/**
 * Typical spot prices: the median of the us-east-1 zones' SpotPrice in skypilot-org/skypilot-catalog
 * catalogs/v8/aws/vms.csv at commit 00148f2a (read 2026-11-30). g5.12xlarge: 2.7804, 2.0796, 2.0813, 2.1824,
 * 2.2387 -> 2.1824; g6.2xlarge: 0.5772, 0.4462, 0.5067, 0.4416 -> 0.4765.
 */
export const SPOT_SOURCE = "skypilot-org/skypilot-catalog catalogs/v8/aws/vms.csv at 00148f2a (read 2026-11-30): median of the us-east-1 zones";
/** vCPUs, memory, NVMe, network, EFA: the Karpenter instance-type reference, read Aug 2026. */
export const SPEC_SOURCE_GPU = "aws/karpenter-provider-aws website/content/en/docs/reference/instance-types.md (Aug 2026)";
export const SPEC_SOURCE_CPU =
    "aws/karpenter-provider-aws website/content/en/docs/reference/instance-types.md (vCPU, memory; Aug 2026); " +
    "network 'up to' bursts from the EC2 instance-type pages (aws.amazon.com/ec2/instance-types)";

// ---------------------------------------------------------------- GPU models

export type GpuModel = "A10G" | "L4" | "L40S" | "A100-40GB" | "A100-80GB" | "H100" | "H200";

export interface GpuFacts {
    readonly model: GpuModel;
    /** Memory per GPU as CUDA reports it (nvidia-smi total), MiB. */
    readonly memoryMiB: number;
    /** Dense (no 2:4 sparsity) bf16 tensor-core peak per GPU, TFLOP/s. */
    readonly bf16DenseTflops: number;
    readonly tflopsSource: string;
    /** Peak memory bandwidth per GPU (HBM or GDDR), GB/s: what bounds generation's decoding (estimate.ts). */
    readonly memoryBandwidthGBs: number;
    readonly bandwidthSource: string;
    readonly bf16: boolean;
    readonly computeCapability: string;
}

// Memory as software sees it: from the project's aws-facts notes (A10G 22,888 MiB; L40S 45,776 MiB;
// A100 40,960 / 81,920 MiB; H100 81,920 MiB), as the Karpenter reference lists nvidia.com/gpu-memory;
// L4 22,888 MiB and H200 144,384 MiB from the same reference (karpenter.k8s.aws/instance-gpu-memory, Aug 2026).
// Memory bandwidth per GPU (read 2026-11-30): NVIDIA's datasheets as quoted by the pages named in each bandwidthSource.
const GPU: Readonly<Record<GpuModel, GpuFacts>> = {
    // NVIDIA publishes no A10G datasheet (it is an AWS-only part). The A10 datasheet gives 125 TFLOP/s dense
    // bf16, but the A10G trades tensor throughput for CUDA-core throughput; Baseten's "NVIDIA A10 vs A10G for
    // ML model inference" (baseten.co/blog/nvidia-a10-vs-a10g-for-ml-model-inference) lists 70 TFLOP/s bf16
    // tensor for the A10G, and MFU tables in public training code use 70 for it. We take 70: the lower
    // figure never promises a faster run.
    A10G: {
        model: "A10G",
        memoryMiB: 22_888,
        bf16DenseTflops: 70,
        tflopsSource: "Baseten, NVIDIA A10 vs A10G (A10G bf16 tensor 70 TFLOP/s; the A10 datasheet's 125 is the non-G part)",
        memoryBandwidthGBs: 600,
        bandwidthSource: "Baseten, NVIDIA A10 vs A10G (baseten.co/blog/nvidia-a10-vs-a10g-for-ml-model-inference): 24 GB GDDR6 at 600 GB/s, as the A10",
        bf16: true,
        computeCapability: "8.6",
    },
    L4: {
        model: "L4",
        memoryMiB: 22_888,
        bf16DenseTflops: 121,
        tflopsSource: "NVIDIA L4 datasheet: BF16 tensor 242 TFLOP/s with sparsity, 121 dense",
        memoryBandwidthGBs: 300,
        bandwidthSource: "NVIDIA L4 datasheet figure, 24 GB GDDR6 at 300 GB/s, as quoted by grokipedia.com/page/NVIDIA_L4_vs_L40S",
        bf16: true,
        computeCapability: "8.9",
    },
    L40S: {
        model: "L40S",
        memoryMiB: 45_776,
        bf16DenseTflops: 362,
        tflopsSource: "NVIDIA L40S datasheet: BF16 tensor 362.05 TFLOP/s dense (733 with sparsity)",
        memoryBandwidthGBs: 864,
        bandwidthSource: "NVIDIA L40S datasheet figure, 48 GB GDDR6 at 864 GB/s, as quoted by grokipedia.com/page/NVIDIA_L4_vs_L40S",
        bf16: true,
        computeCapability: "8.9",
    },
    "A100-40GB": {
        model: "A100-40GB",
        memoryMiB: 40_960,
        bf16DenseTflops: 312,
        tflopsSource: "NVIDIA A100 datasheet: BF16 tensor 312 TFLOP/s dense (624 with sparsity)",
        memoryBandwidthGBs: 1_555,
        bandwidthSource: "NVIDIA A100 datasheet (nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf) as quoted by glennklockwood.com/garden/processors/A100: 40 GB HBM2 at 1,555 GB/s",
        bf16: true,
        computeCapability: "8.0",
    },
    "A100-80GB": {
        model: "A100-80GB",
        memoryMiB: 81_920,
        bf16DenseTflops: 312,
        tflopsSource: "NVIDIA A100 datasheet: BF16 tensor 312 TFLOP/s dense (624 with sparsity)",
        memoryBandwidthGBs: 2_039,
        bandwidthSource: "NVIDIA A100 datasheet (nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf) as quoted by glennklockwood.com/garden/processors/A100: 80 GB HBM2e at 2,039 GB/s",
        bf16: true,
        computeCapability: "8.0",
    },
    H100: {
        model: "H100",
        memoryMiB: 81_920,
        bf16DenseTflops: 989,
        tflopsSource: "NVIDIA H100 SXM datasheet: BF16 tensor 1,979 TFLOP/s with sparsity, 989 dense",
        memoryBandwidthGBs: 3_350,
        bandwidthSource: "NVIDIA H100 SXM datasheet figure, 80 GB HBM3 at 3.35 TB/s, as quoted by aiminingco.com/gpu/h200/specs (the H200's 4.8 TB/s is 43% more)",
        bf16: true,
        computeCapability: "9.0",
    },
    // The H200 is the H100's compute with 141 GB of HBM3e: the same tensor peak, more memory.
    H200: {
        model: "H200",
        memoryMiB: 144_384,
        bf16DenseTflops: 989,
        tflopsSource: "NVIDIA H200 datasheet: BF16 tensor 1,979 TFLOP/s with sparsity, 989 dense (the H100 SXM's compute)",
        memoryBandwidthGBs: 4_800,
        bandwidthSource: "NVIDIA H200 datasheet figure, 141 GB HBM3e at 4.8 TB/s, as quoted by aiminingco.com/gpu/h200/specs",
        bf16: true,
        computeCapability: "9.0",
    },
};

// ---------------------------------------------------------------- instances

export interface InstanceSpec {
    readonly type: string;
    readonly kind: "gpu" | "cpu";
    readonly vcpus: number;
    readonly memoryGiB: number;
    /** Undefined for CPU types. */
    readonly gpuModel: GpuModel | undefined;
    readonly gpuCount: number;
    /** Per GPU, GiB as CUDA sees it (MiB / 1024); 0 for CPU types. */
    readonly gpuMemoryGiB: number;
    /** Dense bf16 tensor peak per GPU, TFLOP/s; 0 for CPU types. */
    readonly bf16DenseTflops: number;
    readonly tflopsSource: string | undefined;
    /** Peak memory bandwidth per GPU, GB/s; 0 for CPU types. */
    readonly memoryBandwidthGBs: number;
    readonly bandwidthSource: string | undefined;
    /** The GPU computes in bf16 (Ampere or newer). */
    readonly bf16: boolean;
    readonly computeCapability: string | undefined;
    /** Instance-store NVMe, GB (decimal, as AWS lists it); 0 when EBS-only. */
    readonly localNvmeGb: number;
    readonly network: string;
    readonly efaDevices: number;
    /** us-east-1 on-demand Linux, USD per hour. */
    readonly onDemandUsdPerHour: number;
    readonly priceSource: string;
    /**
     * A typical us-east-1 spot price, USD per hour: the median over the zones of one dated snapshot
     * (SPOT_SOURCE). Spot moves by the hour and by zone, so this is for comparing options, never a quote;
     * undefined where the catalog has no figure (the price history at `campaign preflight` time is the real one).
     */
    readonly typicalSpotUsdPerHour: number | undefined;
    readonly spotSource: string | undefined;
    readonly specSource: string;
}

interface Row {
    type: string;
    vcpus: number;
    memoryGiB: number;
    gpu?: { model: GpuModel; count: number };
    localNvmeGb: number;
    network: string;
    efaDevices: number;
    usdPerHour: number;
    /** Typical us-east-1 spot (SPOT_SOURCE); absent where no figure was read. */
    spotUsdPerHour?: number;
}

function build(row: Row): InstanceSpec {
    const g = row.gpu ? GPU[row.gpu.model] : undefined;
    return {
        type: row.type,
        kind: g ? "gpu" : "cpu",
        vcpus: row.vcpus,
        memoryGiB: row.memoryGiB,
        gpuModel: g?.model,
        gpuCount: row.gpu?.count ?? 0,
        gpuMemoryGiB: g ? g.memoryMiB / 1024 : 0,
        bf16DenseTflops: g?.bf16DenseTflops ?? 0,
        tflopsSource: g?.tflopsSource,
        memoryBandwidthGBs: g?.memoryBandwidthGBs ?? 0,
        bandwidthSource: g?.bandwidthSource,
        bf16: g?.bf16 ?? false,
        computeCapability: g?.computeCapability,
        localNvmeGb: row.localNvmeGb,
        network: row.network,
        efaDevices: row.efaDevices,
        onDemandUsdPerHour: row.usdPerHour,
        priceSource: g ? PRICE_SOURCE_GPU : PRICE_SOURCE_CPU,
        typicalSpotUsdPerHour: row.spotUsdPerHour,
        spotSource: row.spotUsdPerHour === undefined ? undefined : SPOT_SOURCE,
        specSource: g ? SPEC_SOURCE_GPU : SPEC_SOURCE_CPU,
    };
}

// The table. GPU rows: specs and prices as in the project's aws-facts notes (sources above), prices
// re-read in the Karpenter pricing file. CPU rows: prices read in the same file (2026-02-09 generation).
const ROWS: readonly Row[] = [
    // GPU: training nodes
    { type: "g5.2xlarge", vcpus: 8, memoryGiB: 32, gpu: { model: "A10G", count: 1 }, localNvmeGb: 450, network: "up to 10 Gbps", efaDevices: 0, usdPerHour: 1.212 },
    { type: "g5.12xlarge", vcpus: 48, memoryGiB: 192, gpu: { model: "A10G", count: 4 }, localNvmeGb: 3_800, network: "40 Gbps", efaDevices: 1, usdPerHour: 5.672, spotUsdPerHour: 2.1824 },
    { type: "g5.48xlarge", vcpus: 192, memoryGiB: 768, gpu: { model: "A10G", count: 8 }, localNvmeGb: 7_600, network: "100 Gbps", efaDevices: 1, usdPerHour: 16.288 },
    { type: "g6e.xlarge", vcpus: 4, memoryGiB: 32, gpu: { model: "L40S", count: 1 }, localNvmeGb: 250, network: "up to 20 Gbps (2.5 Gbps baseline)", efaDevices: 0, usdPerHour: 1.861 },
    { type: "g6e.12xlarge", vcpus: 48, memoryGiB: 384, gpu: { model: "L40S", count: 4 }, localNvmeGb: 3_800, network: "100 Gbps", efaDevices: 1, usdPerHour: 10.49264 },
    // Added 2026-11-30: L4 (g6), 8x L40S, 1x H100 and 8x H200. Specs from the Karpenter reference (network as its
    // baseline bandwidth), prices from the same pricing file (2026-07-20 generation). p5e.48xlarge (also 8x H200)
    // has no on-demand price there: it is sold through Capacity Blocks for ML (see compute.capacityReservationId).
    { type: "g6.2xlarge", vcpus: 8, memoryGiB: 32, gpu: { model: "L4", count: 1 }, localNvmeGb: 450, network: "5 Gbps baseline", efaDevices: 0, usdPerHour: 0.9776, spotUsdPerHour: 0.4765 },
    { type: "g6.12xlarge", vcpus: 48, memoryGiB: 192, gpu: { model: "L4", count: 4 }, localNvmeGb: 3_760, network: "40 Gbps", efaDevices: 1, usdPerHour: 4.6016 },
    { type: "g6.48xlarge", vcpus: 192, memoryGiB: 768, gpu: { model: "L4", count: 8 }, localNvmeGb: 7_520, network: "100 Gbps", efaDevices: 1, usdPerHour: 13.3504 },
    { type: "g6e.48xlarge", vcpus: 192, memoryGiB: 1_536, gpu: { model: "L40S", count: 8 }, localNvmeGb: 7_600, network: "400 Gbps", efaDevices: 4, usdPerHour: 30.13118 },
    { type: "p5.4xlarge", vcpus: 16, memoryGiB: 256, gpu: { model: "H100", count: 1 }, localNvmeGb: 3_800, network: "100 Gbps", efaDevices: 1, usdPerHour: 6.88 },
    { type: "p4d.24xlarge", vcpus: 96, memoryGiB: 1_152, gpu: { model: "A100-40GB", count: 8 }, localNvmeGb: 8_000, network: "400 Gbps", efaDevices: 4, usdPerHour: 21.957642 },
    { type: "p4de.24xlarge", vcpus: 96, memoryGiB: 1_152, gpu: { model: "A100-80GB", count: 8 }, localNvmeGb: 8_000, network: "400 Gbps", efaDevices: 4, usdPerHour: 27.44705 },
    { type: "p5.48xlarge", vcpus: 192, memoryGiB: 2_048, gpu: { model: "H100", count: 8 }, localNvmeGb: 30_400, network: "3,200 Gbps", efaDevices: 32, usdPerHour: 55.04 },
    { type: "p5en.48xlarge", vcpus: 192, memoryGiB: 2_048, gpu: { model: "H200", count: 8 }, localNvmeGb: 30_400, network: "3,200 Gbps", efaDevices: 16, usdPerHour: 63.296 },
    // CPU: prep nodes (EBS-only, no EFA at these sizes)
    { type: "c6i.2xlarge", vcpus: 8, memoryGiB: 16, localNvmeGb: 0, network: "up to 12.5 Gbps", efaDevices: 0, usdPerHour: 0.34 },
    { type: "c6i.4xlarge", vcpus: 16, memoryGiB: 32, localNvmeGb: 0, network: "up to 12.5 Gbps", efaDevices: 0, usdPerHour: 0.68 },
    { type: "c6i.8xlarge", vcpus: 32, memoryGiB: 64, localNvmeGb: 0, network: "12.5 Gbps", efaDevices: 0, usdPerHour: 1.36 },
    { type: "m6i.2xlarge", vcpus: 8, memoryGiB: 32, localNvmeGb: 0, network: "up to 12.5 Gbps", efaDevices: 0, usdPerHour: 0.384 },
    { type: "m6i.4xlarge", vcpus: 16, memoryGiB: 64, localNvmeGb: 0, network: "up to 12.5 Gbps", efaDevices: 0, usdPerHour: 0.768 },
    { type: "c7i.2xlarge", vcpus: 8, memoryGiB: 16, localNvmeGb: 0, network: "up to 12.5 Gbps", efaDevices: 0, usdPerHour: 0.357 },
];

/** Every instance the campaign knows, GPU types first. */
export const INSTANCES: readonly InstanceSpec[] = Object.freeze(ROWS.map(build));

const BY_TYPE: ReadonlyMap<string, InstanceSpec> = new Map(INSTANCES.map((i) => [i.type, i]));

/** Every known instance type name. */
export const INSTANCE_TYPES: readonly string[] = INSTANCES.map((i) => i.type);

/** The facts of one instance type; an Error naming the nearest valid type for a misspelling. */
export function getInstance(type: string): InstanceSpec {
    const found = BY_TYPE.get(type);
    if (found) return found;
    throw new Error(unknownNameMessage("instance type", type, INSTANCE_TYPES));
}

/** The instance type, or undefined when the catalog does not know it. */
export function findInstance(type: string): InstanceSpec | undefined {
    return BY_TYPE.get(type);
}

/** Whether an instance (or an instance type, which must be known) has GPUs. */
export function isGpuInstance(instance: InstanceSpec | string): boolean {
    const spec = typeof instance === "string" ? getInstance(instance) : instance;
    return spec.gpuCount > 0;
}

// ---------------------------------------------------------------- storage prices (us-east-1)

/** S3 Standard, first 50 TB/month, us-east-1: aws.amazon.com/s3/pricing (read 2026). */
export const S3_STANDARD_USD_PER_GB_MONTH = 0.023;
/** EBS gp3 storage, us-east-1, baseline 3,000 IOPS / 125 MiB/s included: aws.amazon.com/ebs/pricing (read 2026). */
export const EBS_GP3_USD_PER_GB_MONTH = 0.08;
/** AWS bills monthly storage by the hour over a 730-hour month (AWS pricing pages' convention). */
export const HOURS_PER_MONTH = 730;
