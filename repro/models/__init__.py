"""Model layer (docs/design.md §3): encoders, the multi-task network, checkpoints, the trunk feature cache and model inputs."""
