// A local AWS emulator for tests and the rehearsal: moto_server (moto 5) on loopback, on a free port.
import { spawn, type ChildProcess } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { createServer } from "node:net";
import { delimiter, join } from "node:path";

export interface Moto {
    /** http://127.0.0.1:<port>: pass as AWS_ENDPOINT_URL. */
    readonly endpoint: string;
    readonly port: number;
    stop(): Promise<void>;
}

/** A free TCP port on 127.0.0.1 (free when this returns; bind it soon). */
export function freePort(): Promise<number> {
    return new Promise((resolve, reject) => {
        const server = createServer();
        server.unref();
        server.on("error", reject);
        server.listen(0, "127.0.0.1", () => {
            const address = server.address();
            const port = typeof address === "object" && address ? address.port : 0;
            server.close(() => resolve(port));
        });
    });
}

/** Credentials and region the emulator accepts; merge into a child's environment. */
export const fakeAwsEnv = {
    AWS_ACCESS_KEY_ID: "testing",
    AWS_SECRET_ACCESS_KEY: "testing",
    AWS_REGION: "us-east-1",
    AWS_DEFAULT_REGION: "us-east-1",
} as const;

async function waitForHttp(url: string, child: ChildProcess, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
        if (child.exitCode !== null) throw new Error(`moto_server exited with code ${child.exitCode} before it served`);
        try {
            const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
            await res.arrayBuffer();
            return;
        } catch {
            await new Promise((r) => setTimeout(r, 100));
        }
    }
    throw new Error(`moto_server did not answer at ${url} within ${timeoutMs} ms`);
}

/** The first executable `name` on PATH, or undefined. */
export function onPath(name: string, pathVar: string = process.env.PATH ?? ""): string | undefined {
    for (const dir of pathVar.split(delimiter)) {
        const candidate = join(dir, name);
        try {
            accessSync(candidate, constants.X_OK);
            return candidate;
        } catch {
            // not here
        }
    }
    return undefined;
}

/** Starts `moto_server` on 127.0.0.1 and a free port; resolves once it answers HTTP. */
export async function startMoto(options: { command?: string; timeoutMs?: number } = {}): Promise<Moto> {
    const command = options.command ?? onPath("moto_server");
    if (!command) {
        throw new Error("moto_server is not on PATH: the local S3 emulator comes from the moto package. Install it with: python3 -m pip install 'moto[server]'");
    }
    const port = await freePort();
    const child = spawn(command, ["-H", "127.0.0.1", "-p", String(port)], {
        stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr?.on("data", (chunk: Buffer) => {
        stderr = (stderr + chunk.toString()).slice(-4000);
    });
    const endpoint = `http://127.0.0.1:${port}`;
    try {
        await waitForHttp(`${endpoint}/moto-api/`, child, options.timeoutMs ?? 30_000);
    } catch (e) {
        child.kill("SIGKILL");
        throw new Error(`${(e as Error).message}\n${stderr}`);
    }
    return {
        endpoint,
        port,
        stop: () =>
            new Promise<void>((resolve) => {
                if (child.exitCode !== null || child.signalCode !== null) return resolve();
                const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
                child.once("exit", () => {
                    clearTimeout(timer);
                    resolve();
                });
                child.kill("SIGTERM");
            }),
    };
}
