"""The campaign node runner: runs one job (prep or train) on a node and ends the node when the job ends.

Split by concern: settings (the environment contract), imds (instance metadata, IMDSv2), aws (the AWS CLI,
transfers with retries), checkpoints (pure decisions), status (phases, transitions, status.json), job
(docker or process), watchdogs (pure stop decisions), outcome (exit classification), agent (the CloudWatch
agent), datavolume (the optional EBS data volume) and main (the lifecycle, which always ends in exactly one
`shutdown -h now`). docs/node-runner.md tells the whole story.
"""
