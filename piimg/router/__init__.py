"""RouterOS configuration: desired state, plan, apply (librouteros), .rsc export."""
