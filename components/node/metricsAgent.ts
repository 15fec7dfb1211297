// What the CloudWatch agent on a GPU node publishes: the user data writes this config, and the idle alarm in
// resources/guardrails.ts names the same namespace, metric and period. Pure, so the node folder stays free of Pulumi.

/** Where the CloudWatch agent publishes nvidia-smi metrics. */
export const GPU_METRIC_NAMESPACE = "CWAgent";
/** metrics_collected.nvidia_gpu.measurement "utilization_gpu" is published as nvidia_smi_utilization_gpu. */
export const GPU_UTILIZATION_METRIC = "nvidia_smi_utilization_gpu";
/** Seconds between the agent's samples and the alarm's periods. */
export const GPU_METRIC_PERIOD_SECONDS = 60;

/**
 * The CloudWatch agent config for a GPU node: GPU utilisation and memory every minute, with the
 * InstanceId dimension appended and aggregated to InstanceId alone, so the alarm can name the metric
 * with that one dimension (a metric is identified by all its dimensions; the per-GPU series also carry
 * index, name, arch). https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch-Agent-NVIDIA-GPU.html
 */
export function gpuAgentConfig(): Record<string, unknown> {
    return {
        agent: { metrics_collection_interval: GPU_METRIC_PERIOD_SECONDS, run_as_user: "root" },
        metrics: {
            namespace: GPU_METRIC_NAMESPACE,
            append_dimensions: { InstanceId: "${aws:InstanceId}" },
            aggregation_dimensions: [["InstanceId"]],
            metrics_collected: {
                nvidia_gpu: {
                    measurement: ["utilization_gpu", "memory_used", "memory_total"],
                    metrics_collection_interval: GPU_METRIC_PERIOD_SECONDS,
                },
            },
        },
    };
}
