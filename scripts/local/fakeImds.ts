// A small IMDSv2 stand-in on loopback: PUT /latest/api/token, then GETs with the token for
// instance-id, instance-type and spot/instance-action (404 until a notice is switched on).
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface FakeImds {
    /** http://127.0.0.1:<port>: pass as AWS_EC2_METADATA_SERVICE_ENDPOINT. */
    readonly endpoint: string;
    /** From now on spot/instance-action answers with a terminate notice two minutes ahead. */
    setSpotNotice(on: boolean): void;
    /** While on, every request (the token PUT too) gets a 500: the service failing for a while. */
    setFailing(on: boolean): void;
    /** Requests seen, e.g. "GET /latest/meta-data/instance-id". */
    readonly requests: string[];
    /** GETs refused for a missing or unknown token (the runner must use IMDSv2). */
    readonly unauthorized: () => number;
    stop(): Promise<void>;
}

export async function startFakeImds(
    identity: { instanceId?: string; instanceType?: string } = {},
): Promise<FakeImds> {
    const tokens = new Set<string>();
    const requests: string[] = [];
    let spot = false;
    let failing = false;
    let unauthorized = 0;
    const meta: Record<string, () => string | undefined> = {
        "/latest/meta-data/instance-id": () => identity.instanceId ?? "i-0123456789abcdef0",
        "/latest/meta-data/instance-type": () => identity.instanceType ?? "g5.2xlarge",
        "/latest/meta-data/spot/instance-action": () =>
            spot
                ? JSON.stringify({ action: "terminate", time: new Date(Date.now() + 120_000).toISOString().replace(/\.\d+Z$/, "Z") })
                : undefined,
    };
    const server = createServer((req: IncomingMessage, res: ServerResponse) => {
        const path = (req.url ?? "/").split("?")[0]!;
        requests.push(`${req.method} ${path}`);
        req.resume();
        if (failing) {
            res.writeHead(500).end();
            return;
        }
        if (req.method === "PUT" && path === "/latest/api/token") {
            if (!req.headers["x-aws-ec2-metadata-token-ttl-seconds"]) {
                res.writeHead(400).end();
                return;
            }
            const token = `token-${tokens.size + 1}-${Math.random().toString(36).slice(2)}`;
            tokens.add(token);
            res.writeHead(200, { "content-type": "text/plain" }).end(token);
            return;
        }
        if (req.method === "GET") {
            const token = req.headers["x-aws-ec2-metadata-token"];
            if (typeof token !== "string" || !tokens.has(token)) {
                unauthorized++;
                res.writeHead(401).end();
                return;
            }
            const body = meta[path]?.();
            if (body === undefined) {
                res.writeHead(404).end();
                return;
            }
            res.writeHead(200, { "content-type": "text/plain" }).end(body);
            return;
        }
        res.writeHead(405).end();
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    return {
        endpoint: `http://127.0.0.1:${port}`,
        setSpotNotice: (on) => {
            spot = on;
        },
        setFailing: (on) => {
            failing = on;
        },
        requests,
        unauthorized: () => unauthorized,
        stop: () =>
            new Promise<void>((resolve) => {
                server.closeAllConnections();
                server.close(() => resolve());
            }),
    };
}
