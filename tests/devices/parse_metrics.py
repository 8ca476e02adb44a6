#!/usr/bin/env python3
"""Parses Prometheus text exposition on stdin with prometheus_client's own parser (which
raises on malformed input) and prints the samples as JSON lines:
{"family": …, "type": …, "name": …, "labels": {…}, "value": …}."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        print(json.dumps({"family": family.name, "type": family.type, "name": s.name,
                          "labels": s.labels, "value": s.value}))
