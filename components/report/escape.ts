// Every string put into the report's HTML goes through here: run names, metric names, reasons and S3 keys come
// from configs and from S3, and none of them may open a tag or end an attribute.
const entities: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export function escapeHtml(text: string): string {
    return text.replace(/[&<>"']/g, (c) => entities[c]!);
}
