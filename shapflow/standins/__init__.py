"""Stand-ins for external assets: the tiny configuration (``tiny=true``, ``-P tiny=true``) replaces every dataset
and pretrained network a use case needs with a tiny random one in the real layout (``tiny``), so the whole chain
runs offline in seconds; the values it gives are meaningless."""
