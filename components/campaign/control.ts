// Graceful stop and restart, the parts that are pure: reading a control object, which of the two objects (the
// run's, the campaign's) decides, and the body `campaign stop` writes. The node runner polls the same objects
// (scripts/node-runner/campaign_runner/control.py); the schema is contract.ts's controlRequest, generated into
// containers/schemas/control.schema.json for it.
import { controlActions, controlRequest, type ControlAction, type ControlRequest } from "./contract";

export type ParsedControl = { readonly request: ControlRequest } | { readonly problem: string };

/** A control object's body: the request, or what is wrong with it (never thrown: a bad object is ignored with a warning). */
export function parseControl(body: string, where: string): ParsedControl {
    let json: unknown;
    try {
        json = JSON.parse(body);
    } catch {
        return { problem: `${where} is not JSON; it is ignored (write it again with npm run campaign -- stop)` };
    }
    const action = (json as { action?: unknown } | null)?.action;
    if (typeof action === "string" && !(controlActions as readonly string[]).includes(action)) {
        return { problem: `${where} asks for "${action}", which is not an action (${controlActions.join(", ")}); it is ignored` };
    }
    const parsed = controlRequest.safeParse(json);
    if (!parsed.success) {
        const issue = parsed.error.issues[0];
        return { problem: `${where}: ${issue?.path.join(".") || "(root)"}: ${issue?.message ?? "invalid"}; it is ignored` };
    }
    return { request: parsed.data };
}

/** The action that holds for a run: a stop in either object wins (a campaign-wide restart never lifts a run's stop). */
export function effectiveControl(runAction: ControlAction | undefined, campaignAction: ControlAction | undefined): ControlAction | undefined {
    if (runAction === "stop" || campaignAction === "stop") return "stop";
    return runAction ?? campaignAction;
}

/** The body `campaign stop` writes: the time makes every request a new object with a new ETag. */
export function controlBody(action: ControlAction, requestedBy: string | undefined, now: Date): string {
    const request: ControlRequest = { action, requestedAt: now.toISOString(), ...(requestedBy ? { requestedBy } : {}) };
    return `${JSON.stringify(request, null, 2)}\n`;
}
