// Secrets: the HF token and the W&B key as SSM SecureString parameters. The values live only in the
// parameters (and encrypted in Pulumi state); nodes get the parameter names and read them at boot.
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

/** The environment variable each secret becomes inside the job, and its parameter's last path part. */
export const SECRET_PARAMETERS = {
    HF_TOKEN: "hf-token",
    WANDB_API_KEY: "wandb-key",
} as const;
export type SecretEnvName = keyof typeof SECRET_PARAMETERS;

export interface SecretsArgs {
    /** Prefix of the parameters' names, e.g. /campaign/<campaign>/<stack>/ (see naming.parameterPrefix). */
    readonly parameterPrefix: string;
    /** The Hugging Face token (config secret campaign:hfToken); no parameter when absent. */
    readonly hfToken?: pulumi.Input<string>;
    /** The Weights & Biases API key (config secret campaign:wandbKey); no parameter when absent. */
    readonly wandbKey?: pulumi.Input<string>;
    /** Tags for every parameter. */
    readonly tags: Readonly<Record<string, string>>;
}

/** The full parameter name of a secret. */
export function secretParameterName(prefix: string, env: SecretEnvName): string {
    return `${prefix.endsWith("/") ? prefix : `${prefix}/`}${SECRET_PARAMETERS[env]}`;
}

export class Secrets extends pulumi.ComponentResource {
    /** Environment variable name -> SSM parameter name; what the runner is told (never the values). */
    public readonly parameterNames: Readonly<Record<string, string>>;
    /** ARNs of the parameters: the only parameters a node may read. */
    public readonly parameterArns: pulumi.Output<string>[];

    constructor(name: string, args: SecretsArgs, opts?: pulumi.ComponentResourceOptions) {
        super("campaign:index:Secrets", name, {}, opts);
        const names: Record<string, string> = {};
        const arns: pulumi.Output<string>[] = [];
        const given: Array<[SecretEnvName, pulumi.Input<string> | undefined]> = [
            ["HF_TOKEN", args.hfToken],
            ["WANDB_API_KEY", args.wandbKey],
        ];
        for (const [env, value] of given) {
            if (value === undefined) continue;
            const parameterName = secretParameterName(args.parameterPrefix, env);
            const parameter = new aws.ssm.Parameter(
                `${name}-${SECRET_PARAMETERS[env]}`,
                {
                    name: parameterName,
                    type: "SecureString",
                    value: pulumi.secret(value),
                    description: `${env} for the campaign's jobs, read by the node runner at boot`,
                    tags: { ...args.tags },
                },
                { parent: this },
            );
            names[env] = parameterName;
            arns.push(parameter.arn);
        }
        this.parameterNames = names;
        this.parameterArns = arns;
        this.registerOutputs({ parameterNames: this.parameterNames, parameterArns: this.parameterArns });
    }
}
