// The experiment config: one validated object per stack. Every knob the reference campaigns use (docs/campaigns.md).
// Defaults are safe and cheap: spot, a one-hour cap, a GPU-idle watchdog, artifacts kept on destroy.
import { z } from "zod";

const name = z
    .string()
    .regex(/^[a-z0-9][a-z0-9-]{0,38}[a-z0-9]$/, "lowercase letters, digits and '-', 2-40 characters, no leading or trailing '-'");

// ---------------------------------------------------------------- data

export const dataSource = z
    .string()
    .refine(
        (s) => /^s3:\/\/[a-z0-9.-]{3,63}\/.+/.test(s) || /^hf:\/\/[\w.-]+(\/[\w.-]+)?$/.test(s) || /^(\.{0,2}\/|[\w.-]+\/)/.test(s),
        "a local path (./data/train.jsonl), s3://bucket/key or hf://owner/dataset",
    );

export const dataFormat = z.discriminatedUnion("kind", [
    z.object({
        kind: z.literal("alpaca"),
        instructionField: z.string().default("instruction"),
        inputField: z.string().default("input"),
        outputField: z.string().default("output"),
    }).strict(),
    z.object({
        kind: z.literal("chat"),
        messagesField: z.string().default("messages"),
    }).strict(),
    z.object({
        kind: z.literal("seq2seq"),
        inputField: z.string().default("input"),
        targetField: z.string().default("target"),
    }).strict(),
    z.object({
        kind: z.literal("classification"),
        textField: z.string().default("text"),
        labelField: z.string().default("label"),
        /** Label names in index order when the label column holds integers (AG News: 0..3). */
        labels: z.array(z.string().min(1)).min(2),
        /** The answer is rendered as JSON {"<answerKey>": "<label>"} as in the AG News campaign. */
        answerKey: z.string().default("category"),
    }).strict(),
]);

export const promptTemplate = z
    .object({
        /** System message for chat-rendered examples. */
        system: z.string().optional(),
        /** Prompt text with {field} placeholders taken from the row, e.g. "{instruction}\n\n{input}". */
        prompt: z.string().optional(),
    })
    .strict()
    .default({});

export const cleaning = z
    .object({
        /** Drop examples whose every text field is shorter than this (the reasoning campaign: 50). */
        minChars: z.number().int().min(0).default(1),
        /** Drop examples longer than this in total (the reasoning campaign: 4096). */
        maxChars: z.number().int().positive().default(100_000),
        /** Exact duplicate removal by content hash. */
        dedup: z.enum(["exact", "none"]).default("exact"),
        /** Drop rows with encoding damage (U+FFFD, control characters). */
        dropEncodingErrors: z.boolean().default(true),
        /** Drop truncated answers: containing the marker and shorter than maxChars (the reasoning campaign: "..." under 100). */
        dropTruncated: z
            .object({ marker: z.string().min(1).default("..."), maxChars: z.number().int().positive().default(100) })
            .strict()
            .optional(),
    })
    .strict()
    .default({ minChars: 1, maxChars: 100_000, dedup: "exact", dropEncodingErrors: true });

const ratios = z
    .object({
        train: z.number().gt(0).lt(1),
        validation: z.number().min(0).lt(1),
        test: z.number().min(0).lt(1).default(0),
    })
    .strict()
    .refine((r) => Math.abs(r.train + r.validation + r.test - 1) < 1e-6, "ratios must add up to 1");

export const split = z
    .discriminatedUnion("kind", [
        z.object({
            kind: z.literal("random"),
            seed: z.number().int().default(42),
            ratios: ratios.default({ train: 0.95, validation: 0.05, test: 0 }),
        }).strict(),
        z.object({
            kind: z.literal("group"),
            /** No group appears in two splits (the SocSci210 campaign: study_id). */
            column: z.string().min(1),
            seed: z.number().int().default(42),
            /** Exact numbers of groups per split (the SocSci210 campaign: 170/20/20), or ratios of groups. */
            counts: z.object({ train: z.number().int().positive(), validation: z.number().int().min(0), test: z.number().int().min(0).default(0) }).strict().optional(),
            ratios: ratios.optional(),
        }).strict(),
    ])
    .default({ kind: "random", seed: 42, ratios: { train: 0.95, validation: 0.05, test: 0 } });

export const tokenize = z
    .object({
        /** Tokenize during prep with the base model's tokenizer, so the GPU never tokenizes (docs/campaigns.md, formatting before the GPUs). */
        enabled: z.boolean().default(false),
        maxLength: z.number().int().positive().default(2048),
        /** Pack several examples into one sequence of maxLength (the AG News campaign: 30-40% faster). */
        packing: z.boolean().default(false),
    })
    .strict()
    .default({ enabled: false, maxLength: 2048, packing: false });

export const data = z
    .object({
        source: dataSource,
        /** Dataset revision for hf:// sources, file name inside an s3:// prefix is part of the key. */
        revision: z.string().optional(),
        fileFormat: z.enum(["auto", "jsonl", "parquet", "csv"]).default("auto"),
        format: dataFormat,
        template: promptTemplate,
        cleaning,
        /** The prep job fails when more than this share of rows is malformed (bad JSON, missing fields). */
        maxMalformedFraction: z.number().min(0).max(1).default(0.01),
        split,
        tokenize,
        /** Size of the data for the plan: examples in the train split and mean tokens per example. */
        estimate: z
            .object({ trainExamples: z.number().int().positive(), meanTokens: z.number().positive() })
            .strict(),
    })
    .strict();

// ---------------------------------------------------------------- model and method

export const modelFamilies = ["causal-lm", "seq2seq"] as const;

export const model = z
    .object({
        /** Hub id (Qwen/Qwen2.5-7B-Instruct) or s3:// prefix of weights already staged. */
        id: z.string().min(1),
        revision: z.string().default("main"),
        family: z.enum(modelFamilies),
    })
    .strict();

/** The training methods; the plan's estimates and the job spec use this same list. */
export const methodKinds = ["full", "lora", "qlora"] as const;
export type MethodKind = (typeof methodKinds)[number];

/** LoRA's defaults: rank 16 with alpha 2r on every attention projection, a common starting point. */
export const loraDefaults = {
    r: 16,
    alpha: 32,
    dropout: 0.1,
    targetModules: ["q_proj", "k_proj", "v_proj", "o_proj"],
    maxTrainableFraction: 0.1,
};

export const lora = z
    .object({
        r: z.number().int().positive().default(loraDefaults.r),
        alpha: z.number().positive().default(loraDefaults.alpha),
        dropout: z.number().min(0).lt(1).default(loraDefaults.dropout),
        targetModules: z.array(z.string().min(1)).min(1).default(loraDefaults.targetModules),
        /** Fail when more than this share of parameters is trainable (the SocratiQ campaign: 46% by accident). */
        maxTrainableFraction: z.number().gt(0).max(1).default(loraDefaults.maxTrainableFraction),
    })
    .strict();

export const method = z
    .object({
        kind: z.enum(methodKinds).default("lora"),
        lora: lora.default(loraDefaults),
    })
    .strict()
    .default({ kind: "lora", lora: loraDefaults });

// ---------------------------------------------------------------- training

/** Metrics of the evaluation registry (containers/common/task_metrics.py); each names the answer shapes it reads. */
export const evaluationMetrics = ["rouge", "bleu", "exact_match", "accuracy", "macro_f1", "pearson", "mae", "rmse", "parse_rate"] as const;
export type EvaluationMetric = (typeof evaluationMetrics)[number];

/** Metrics where lower is better; every other one is better higher. The direction comes from the metric, never the user. */
export const lowerIsBetterMetrics: readonly EvaluationMetric[] = ["mae", "rmse"];

/**
 * Choosing the best checkpoint by a task metric instead of the validation loss: at every evalSteps the trainer
 * generates answers for a seeded sample of `rows` validation rows, scores them as the evaluation does
 * (evaluation.answer, evaluation.generation), and keeps the checkpoint with the best value; earlyStopping, when set,
 * stops on it too. The final evaluation and the output model use that checkpoint.
 */
export const selectBy = z
    .object({
        /** One of evaluation.metrics (rouge is read as rougeL); mae and rmse are better lower, the others higher. */
        metric: z.enum(evaluationMetrics),
        /** Validation rows generated for at every evaluation during training: each costs rows x maxNewTokens decoding. */
        rows: z.number().int().positive().max(10_000).default(64),
    })
    .strict();

export const optimizers = ["adamw_torch", "adamw_torch_fused", "paged_adamw_8bit", "paged_adamw_32bit", "adamw_8bit", "adafactor", "sgd"] as const;
export const schedulers = ["linear", "cosine", "constant", "constant_with_warmup"] as const;

export const training = z
    .object({
        learningRate: z.number().gt(0).lt(1).default(5e-5),
        scheduler: z.enum(schedulers).default("cosine"),
        warmupRatio: z.number().min(0).lt(1).optional(),
        warmupSteps: z.number().int().min(0).optional(),
        epochs: z.number().positive().optional(),
        maxSteps: z.number().int().positive().optional(),
        perDeviceBatch: z.number().int().positive().default(8),
        evalBatch: z.number().int().positive().optional(),
        gradientAccumulation: z.number().int().positive().default(1),
        /** When given, must equal GPUs x perDeviceBatch x gradientAccumulation (the SocSci210 campaign: 8 x 8 x 16 = 1024). */
        globalBatch: z.number().int().positive().optional(),
        maxSeqLength: z.number().int().positive().default(1024),
        precision: z.enum(["bf16", "fp16", "fp32"]).default("bf16"),
        tf32: z.boolean().default(true),
        gradientCheckpointing: z.boolean().default(false),
        /** DeepSpeed ZeRO stage; 0 is plain data parallel (DDP). */
        zeroStage: z.union([z.literal(0), z.literal(1), z.literal(2), z.literal(3)]).default(0),
        optimizer: z.enum(optimizers).default("adamw_torch_fused"),
        weightDecay: z.number().min(0).default(0),
        maxGradNorm: z.number().positive().default(1.0),
        evalSteps: z.number().int().positive().default(500),
        saveSteps: z.number().int().positive().default(500),
        loggingSteps: z.number().int().positive().default(10),
        /** Checkpoints kept locally and in S3. */
        saveTotalLimit: z.number().int().positive().default(3),
        /** Stops after `patience` evaluations without an improvement: of the validation loss, or of selectBy's metric. */
        earlyStopping: z
            .object({ patience: z.number().int().positive(), threshold: z.number().min(0).default(0) })
            .strict()
            .optional(),
        /** The best checkpoint (and early stopping) by a task metric on validation rows; absent: by the validation loss. */
        selectBy: selectBy.optional(),
        seed: z.number().int().default(42),
    })
    .strict();

/** Your own image and command instead of the built-in trainer; it gets the same paths and spec. */
export const customJob = z
    .object({
        image: z.string().min(1),
        command: z.array(z.string()).min(1),
    })
    .strict();

// ---------------------------------------------------------------- evaluation (the task metric the campaign is judged by)

export const answerShapes = ["text", "json", "number", "label"] as const;
export type AnswerShape = (typeof answerShapes)[number];

/** Which answer shapes each metric can score (the rest is refused with the fix). */
export const metricShapes: Readonly<Record<EvaluationMetric, readonly AnswerShape[]>> = {
    rouge: ["text", "json"],
    bleu: ["text", "json"],
    exact_match: ["text", "json", "number", "label"],
    accuracy: ["json", "label"],
    macro_f1: ["json", "label"],
    pearson: ["number", "json"],
    mae: ["number", "json"],
    rmse: ["number", "json"],
    parse_rate: ["text", "json", "number", "label"],
};

/** How an answer is read from the generated text (and from the reference) before it is scored. */
export const answerShape = z.discriminatedUnion("shape", [
    /** The whole answer, whitespace-trimmed. */
    z.object({ shape: z.literal("text") }).strict(),
    /** The value under `key` of the first JSON object in the answer (the AG News campaign: {"category": "World"}). */
    z.object({ shape: z.literal("json"), key: z.string().min(1) }).strict(),
    /** The last number in the answer ("Response: 3", "... so the answer is 42."). */
    z.object({ shape: z.literal("number") }).strict(),
    /** One of data.format.labels (a classification format), matched case-insensitively. */
    z.object({ shape: z.literal("label") }).strict(),
]);

/** The fields without the cross-field checks: the train spec extends these (components/campaign/jobSpec.ts). */
export const evaluationFields = z
    .object({
        /** The split whose rows are evaluated; prep keeps their prompts, reference answers and groupBy column. */
        split: z.enum(["test", "validation"]).default("test"),
        /** "all" rows of the split, or a seeded sample of this many (the same rows for every run and the baseline). */
        rows: z.union([z.literal("all"), z.number().int().positive()]).default("all"),
        seed: z.number().int().default(42),
        generation: z
            .object({
                maxNewTokens: z.number().int().positive().max(8192).default(128),
                /** Prompts per generate() call. */
                batchSize: z.number().int().positive().default(16),
                /** Absent: greedy decoding (the default, reproducible). Present: sampling with these settings. */
                sampling: z
                    .object({ temperature: z.number().gt(0).default(1), topP: z.number().gt(0).max(1).default(1), seed: z.number().int().default(42) })
                    .strict()
                    .optional(),
            })
            .strict()
            .default({ maxNewTokens: 128, batchSize: 16 }),
        answer: answerShape,
        metrics: z
            .array(z.enum(evaluationMetrics))
            .min(1)
            .refine((m) => new Set(m).size === m.length, "each metric once"),
        /** A column of the raw data to break the metrics down by (per study, per difficulty). */
        groupBy: z.string().min(1).optional(),
        /** Evaluate each base model once per campaign on the same rows, to compare the runs against. */
        baseline: z.boolean().default(true),
    })
    .strict();

export const evaluation = evaluationFields.superRefine((e, ctx) => {
    for (const [i, metric] of e.metrics.entries()) {
        const shapes = metricShapes[metric];
        if (!shapes.includes(e.answer.shape)) {
            ctx.addIssue({
                code: "custom",
                path: ["metrics", i],
                message: `${metric} scores ${shapes.join(" or ")} answers, but answer.shape is ${e.answer.shape}: remove ${metric} or set answer.shape to ${shapes[0]}`,
        });
        }
    }
});

// ---------------------------------------------------------------- runs (a sweep over one prepared dataset)

/**
 * An override of `schema`: every field optional and without its default. zod 4 applies a field's default even inside
 * `.partial()` (with zod 4.6.7, `training.partial()` parsed a run's `training: { seed: 1 }` into every training
 * default), and the merge then replaced the stack's own values with those defaults.
 * Defaults are filled once, when the merged run is parsed against the full schema.
 */
function overrideOf<Shape extends z.ZodRawShape>(schema: z.ZodObject<Shape>) {
    const shape: Record<string, z.ZodType> = {};
    for (const [key, field] of Object.entries(schema.shape)) shape[key] = withoutDefault(field as z.ZodType);
    return schema.extend(shape).partial();
}

function withoutDefault(field: z.ZodType): z.ZodType {
    if (field instanceof z.ZodDefault) return withoutDefault(field.unwrap() as z.ZodType);
    if (field instanceof z.ZodOptional) return withoutDefault(field.unwrap() as z.ZodType).optional();
    if (field instanceof z.ZodObject) return overrideOf(field);
    return field;
}

const runOverrides = z
    .object({
        model: overrideOf(model).optional(),
        method: z.object({ kind: z.enum(methodKinds).optional(), lora: overrideOf(lora).optional() }).strict().optional(),
        training: overrideOf(training).optional(),
        compute: z.object({ instanceType: z.string().optional() }).strict().optional(),
    })
    .strict();
export type RunOverrides = z.input<typeof runOverrides>;

export const run = z.object({ name }).extend(runOverrides.shape).strict();

/** A grid: every combination of the listed values, by dotted path (training.learningRate: [5e-6, 1e-5]). */
export const sweep = z
    .object({
        grid: z.record(z.string().regex(/^(model|method|training)\.[A-Za-z.]+$/, "a dotted path under model, method or training"), z.array(z.union([z.number(), z.string(), z.boolean()])).min(1)),
    })
    .strict();

// ---------------------------------------------------------------- compute, prep, storage, tracking

export const compute = z
    .object({
        instanceType: z.string().default("g5.2xlarge"),
        market: z.enum(["spot", "on-demand"]).default("spot"),
        /** Hard cap per node: the runner stops the job (with a checkpoint) and the node ends itself. */
        maxHours: z.number().positive().max(240).default(1),
        /** The node ends itself when GPU utilisation stays under gpuIdleThreshold for this long. */
        gpuIdleMinutes: z.number().int().positive().default(20),
        gpuIdleThreshold: z.number().min(0).max(100).default(5),
        /** The runner stops a job whose progress file shows no new step for this long after its first step: a hung
         *  collective (NCCL) keeps every GPU busy, which the GPU-idle alarm cannot see. 0 turns it off. */
        stallMinutes: z.number().int().min(0).max(24 * 60).default(30),
        /** Automatic relaunches of a run that failed with unchanged settings (components/campaign/relaunch.ts). */
        retries: z.number().int().min(0).max(10).default(0),
        rootVolumeGb: z.number().int().min(100).max(16_384).default(200),
        /** An extra encrypted gp3 volume for data when the instance has no local NVMe: attached to the one run's
         *  node, found by the runner by its volume id, formatted once, mounted, and the dataset staged on it. */
        dataVolumeGb: z.number().int().positive().max(16_384).optional(),
        availabilityZone: z.string().regex(/^[a-z]{2}-[a-z]+-\d[a-z]$/, "an availability zone such as us-east-1a").optional(),
        /** Zones to try, in order of preference: a GPU node with several launches in the first that has capacity, the
         *  prep node in the first (availabilityZone, when also given, must be that one); `campaign preflight` checks
         *  each offers the instance type (and its spot price). */
        availabilityZones: z
            .array(z.string().regex(/^[a-z]{2}-[a-z]+-\d[a-z]$/, "an availability zone such as us-east-1a"))
            .min(1)
            .refine((zones) => new Set(zones).size === zones.length, "each zone once")
            .optional(),
        /** Other instance types a run may use when its own has no capacity or offering, in order of preference. Each
         *  must keep the run's job spec (the same GPU count, so the global batch and the checkpoints stay valid) and
         *  fit it. The GPU node's launch tries its own type in each zone, then each of these in each zone, in one EC2
         *  Fleet request, and takes the first with capacity (docs/aws.md, "Fallback across zones and types");
         *  `campaign preflight` checks each is offered, and the plan lists the order. */
        fallbackInstanceTypes: z
            .array(z.string().min(1))
            .min(1)
            .refine((types) => new Set(types).size === types.length, "each type once")
            .optional(),
        /** A capacity reservation (cr-...) the GPU nodes launch into: an On-Demand Capacity Reservation or a Capacity
         *  Block for ML, which is how p4de/p5/p5e capacity is usually obtained. */
        capacityReservationId: z.string().regex(/^cr-[0-9a-f]+$/, "a capacity reservation id such as cr-0abc123").optional(),
        /** The reservation is a Capacity Block for ML: the nodes launch with the capacity-block market type, as EC2 requires. */
        capacityBlock: z.boolean().optional(),
        subnetId: z.string().regex(/^subnet-[0-9a-f]+$/, "a subnet id such as subnet-0abc123").optional(),
        /** Public SSM parameter of the GPU AMI (Deep Learning Base OSS NVIDIA Driver, Ubuntu 22.04). */
        amiParameter: z.string().default("/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"),
    })
    .strict();

export const prep = z
    .object({
        runOn: z.enum(["ec2", "local"]).default("ec2"),
        instanceType: z.string().default("c6i.2xlarge"),
        maxHours: z.number().positive().max(48).default(2),
        rootVolumeGb: z.number().int().min(30).max(16_384).default(100),
        /** Public SSM parameter of the CPU AMI: standard Amazon Linux 2023, which ships the AWS CLI v2 the runner
         *  needs (the ECS-optimised AMI is built from the minimal image without it); the user data installs Docker.
         *  (its release notes name the source AMI: https://github.com/aws/amazon-ecs-ami/releases, "al2023-ami-minimal-...").
         *  Docker on AL2023: https://docs.aws.amazon.com/linux/al2023/ug/container.html */
        amiParameter: z.string().default("/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"),
    })
    .strict()
    .default({ runOn: "ec2", instanceType: "c6i.2xlarge", maxHours: 2, rootVolumeGb: 100, amiParameter: "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64" });

export const storage = z
    .object({
        /** An existing bucket to use (the campaign writes under its own prefixes); a new bucket when absent. */
        existingBucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, "an S3 bucket name").optional(),
        /** Keep the bucket and its artifacts on `pulumi destroy` (default). */
        keepOnDestroy: z.boolean().default(true),
        /** Intermediate checkpoints expire after this many days; final outputs never do. */
        checkpointExpiryDays: z.number().int().positive().default(30),
    })
    .strict()
    .default({ keepOnDestroy: true, checkpointExpiryDays: 30 });

export const images = z
    .object({
        /** A pushed trainer image; no build when given (machines without Docker). */
        trainer: z.string().min(1).optional(),
        prep: z.string().min(1).optional(),
        /** Where an image that is not given is built: region (default) builds it in the campaign's region with
         *  CodeBuild, next to ECR and the nodes, and needs no Docker here; local builds it with this machine's
         *  Docker engine and pushes it (a workstation or CI runner with Docker and a fast uplink). */
        buildOn: z.enum(["region", "local"]).default("region"),
    })
    .strict()
    .default({ buildOn: "region" });

export const tracking = z
    .object({ wandbProject: z.string().min(1).optional() })
    .strict()
    .default({});

export const budget = z
    .object({ monthlyUsd: z.number().positive(), emails: z.array(z.email()).min(1) })
    .strict();

// ---------------------------------------------------------------- the whole experiment

export const experiment = z
    .object({
        /** The campaign's name: tags, S3 prefixes and resource names derive from it. */
        name,
        description: z.string().optional(),
        region: z.string().regex(/^[a-z]{2}-[a-z]+-\d$/, "an AWS region such as us-east-1").default("us-east-1"),
        data,
        model,
        method,
        training,
        customJob: customJob.optional(),
        /** The task metrics every run ends with (and the base model's); none when absent. */
        evaluation: evaluation.optional(),
        runs: z.array(run).min(1).optional(),
        sweep: sweep.optional(),
        compute: compute.default({
            instanceType: "g5.2xlarge",
            market: "spot",
            maxHours: 1,
            gpuIdleMinutes: 20,
            gpuIdleThreshold: 5,
            stallMinutes: 30,
            retries: 0,
            rootVolumeGb: 200,
            amiParameter: "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id",
        }),
        prep,
        storage,
        images,
        tracking,
        budget: budget.optional(),
    })
    .strict();

export type Experiment = z.output<typeof experiment>;
export type ExperimentInput = z.input<typeof experiment>;
export type DataConfig = Experiment["data"];
export type ModelConfig = Experiment["model"];
export type MethodConfig = Experiment["method"];
export type TrainingConfig = Experiment["training"];
export type ComputeConfig = Experiment["compute"];
export type EvaluationConfig = z.output<typeof evaluation>;
