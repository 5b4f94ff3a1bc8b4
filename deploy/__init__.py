"""Deployment checks (`flow doctor`): is this machine ready for compose.yaml's ROCm stack?

Not part of the engine: nothing here runs workflows; only the CLI's `doctor` command imports it.
"""
