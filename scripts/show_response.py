"""Print a /v1/features JSON response as a small table (used by the demo)."""

import json
import sys

with open(sys.argv[1]) as f:
    body = json.load(f)
print(f"model: {body['metadata']['model']}   entities: {body['entities']}")
for ref, column in zip(body["metadata"]["features"], body["results"], strict=True):
    when = column["event_timestamps"][0] or ""
    print(f"  {ref:<40} {column['values'][0]!r:<22} {column['statuses'][0]:<8} {when}")
