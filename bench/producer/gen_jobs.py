#!/usr/bin/env python3
"""Writes N message-job JSON lines (default 1,000,000) for the producer benchmark:
500 tenants, KE/NG/UG numbers in E.164 and national format, bodies and templates."""
import json
import sys

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
out = sys.stdout
numbers = [("+2547", 8), ("07", 8, "KE"), ("+2348", 9), ("+2567", 8)]
for i in range(n):
    tenant = f"tenant-{i % 500:03d}"
    kind = i % 4
    if kind == 0:
        to, extra = f"+2547{22000000 + i % 1000000:08d}", {}
    elif kind == 1:
        to, extra = f"07{22000000 + i % 1000000:08d}", {"country": "KE"}
    elif kind == 2:
        to, extra = f"+234803{i % 10000000:07d}", {}
    else:
        to, extra = f"+25677{i % 10000000:07d}", {}
    job = {"tenant_id": tenant, "channel": "sms", "to": to, **extra,
           "idempotency_key": f"bench-{i}"}
    if i % 2:
        job["body"] = f"Your verification code is {i % 1000000:06d}. It expires in 10 minutes."
    else:
        job["template"] = "order-confirmation"
        job["variables"] = {"name": "Ada", "order_id": f"AC-{i}"}
    out.write(json.dumps(job, separators=(",", ":")))
    out.write("\n")
