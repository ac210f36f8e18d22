"""Host-side end-to-end health checks: nodes, Kubernetes, MetalLB, router BGP, HTTP."""
