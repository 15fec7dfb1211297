"""Code shared by the prep and trainer jobs: the job spec, exit codes, paths, rendering and tokenization."""
