// Guardrails in AWS, outside the node: a CloudWatch alarm per GPU node that terminates the instance when
// its GPUs stay idle for the configured minutes (the runner has its own watchdog; this one works even when
// the runner is dead), and an optional AWS Budget on the campaign tag with e-mail alerts.
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { GPU_METRIC_NAMESPACE, GPU_METRIC_PERIOD_SECONDS, GPU_UTILIZATION_METRIC } from "../node/metricsAgent";

/** The alarm action that terminates the instance the alarm's metric names. */
export function terminateActionArn(region: string): string {
    return `arn:aws:automate:${region}:ec2:terminate`;
}

export interface IdleAlarmSettings {
    readonly region: string;
    readonly instanceId: pulumi.Input<string>;
    /** Minutes under the threshold before the node is terminated. */
    readonly idleMinutes: number;
    /** Percent GPU utilisation under which the node counts as idle. */
    readonly thresholdPercent: number;
    readonly description: string;
    readonly tags: Readonly<Record<string, string>>;
}

/** The alarm: the busiest GPU's utilisation under the threshold for idleMinutes one-minute periods. */
export function idleAlarmArgs(s: IdleAlarmSettings): aws.cloudwatch.MetricAlarmArgs {
    if (!Number.isInteger(s.idleMinutes) || s.idleMinutes < 1) throw new Error(`idleMinutes must be a positive integer, got ${s.idleMinutes}`);
    return {
        alarmDescription: s.description,
        namespace: GPU_METRIC_NAMESPACE,
        metricName: GPU_UTILIZATION_METRIC,
        dimensions: { InstanceId: s.instanceId },
        statistic: "Maximum",
        period: GPU_METRIC_PERIOD_SECONDS,
        evaluationPeriods: s.idleMinutes,
        datapointsToAlarm: s.idleMinutes,
        threshold: s.thresholdPercent,
        comparisonOperator: "LessThanThreshold",
        // No data (the agent not started yet, or the node already gone) is not proof of idleness.
        treatMissingData: "missing",
        alarmActions: [terminateActionArn(s.region)],
        tags: { ...s.tags },
    };
}

export interface BudgetSettings {
    readonly campaign: string;
    readonly stack: string;
    readonly monthlyUsd: number;
    readonly emails: readonly string[];
    readonly tags: Readonly<Record<string, string>>;
}

/** A monthly cost budget over the resources tagged campaign=<campaign>: alerts at 80% actual and 100% forecast. */
export function budgetArgs(s: BudgetSettings): aws.budgets.BudgetArgs {
    if (s.emails.length === 0) throw new Error("a budget needs at least one e-mail address");
    const notify = (threshold: number, notificationType: "ACTUAL" | "FORECASTED"): aws.types.input.budgets.BudgetNotification => ({
        comparisonOperator: "GREATER_THAN",
        notificationType,
        threshold,
        thresholdType: "PERCENTAGE",
        subscriberEmailAddresses: [...s.emails],
    });
    return {
        name: `campaign-${s.campaign}-${s.stack}`,
        budgetType: "COST",
        limitAmount: s.monthlyUsd.toFixed(2),
        limitUnit: "USD",
        timeUnit: "MONTHLY",
        // The tag must be activated as a cost-allocation tag; "user:" marks a user-defined tag.
        costFilters: [{ name: "TagKeyValue", values: [`user:campaign$${s.campaign}`] }],
        notifications: [notify(80, "ACTUAL"), notify(100, "ACTUAL"), notify(100, "FORECASTED")],
        tags: { ...s.tags },
    };
}

export interface GuardrailsArgs {
    readonly region: string;
    readonly campaign: string;
    readonly stack: string;
    /** GPU nodes to watch, by run name. */
    readonly gpuNodes: ReadonlyArray<{ readonly run: string; readonly instanceId: pulumi.Input<string>; readonly tags: Readonly<Record<string, string>> }>;
    /** Minutes of GPU idleness before a node is terminated (compute.gpuIdleMinutes). */
    readonly idleMinutes: number;
    /** Idle threshold in percent (compute.gpuIdleThreshold). */
    readonly thresholdPercent: number;
    /** An AWS Budget with e-mail alerts; none when absent. */
    readonly budget?: { readonly monthlyUsd: number; readonly emails: readonly string[] };
    /** Tags for the budget. */
    readonly tags: Readonly<Record<string, string>>;
}

export class Guardrails extends pulumi.ComponentResource {
    /** Alarm names by run. */
    public readonly alarmNames: Readonly<Record<string, pulumi.Output<string>>>;
    public readonly budget?: aws.budgets.Budget;

    constructor(name: string, args: GuardrailsArgs, opts?: pulumi.ComponentResourceOptions) {
        super("campaign:index:Guardrails", name, {}, opts);
        const alarms: Record<string, pulumi.Output<string>> = {};
        for (const node of args.gpuNodes) {
            const alarm = new aws.cloudwatch.MetricAlarm(
                `${name}-idle-${node.run}`,
                idleAlarmArgs({
                    region: args.region,
                    instanceId: node.instanceId,
                    idleMinutes: args.idleMinutes,
                    thresholdPercent: args.thresholdPercent,
                    description: `campaign ${args.campaign} run ${node.run}: terminate the node after ${args.idleMinutes} min with every GPU under ${args.thresholdPercent}%`,
                    tags: node.tags,
                }),
                { parent: this },
            );
            alarms[node.run] = alarm.name;
        }
        if (args.budget) {
            this.budget = new aws.budgets.Budget(
                `${name}-budget`,
                budgetArgs({ campaign: args.campaign, stack: args.stack, monthlyUsd: args.budget.monthlyUsd, emails: args.budget.emails, tags: args.tags }),
                { parent: this },
            );
        }
        this.alarmNames = alarms;
        this.registerOutputs({ alarmNames: this.alarmNames });
    }
}
