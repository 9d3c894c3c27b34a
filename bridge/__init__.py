"""zoiper-bridge: a provisioning gateway for branded Zoiper softphones."""

__version__ = "0.1.0"
