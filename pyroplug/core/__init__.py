"""The pyroplug kernel: hook specs, plugin registry, config, wire protocol and the remote-object model."""
